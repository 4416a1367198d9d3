"""napari widgets: thin Qt/magicgui front-ends over :mod:`napari_b2u.api`."""
