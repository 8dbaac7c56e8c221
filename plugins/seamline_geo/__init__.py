"""seamline_geo: the geo plugin for seamline."""
