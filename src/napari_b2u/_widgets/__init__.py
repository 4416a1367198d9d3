"""napari widgets: thin Qt/magicgui front-ends over `napari_b2u.api`."""
