"""seamline_medical: the medical plugin for seamline."""
