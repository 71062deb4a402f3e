"""File formats: the one boundary between the library's ``Volume`` and the outside world."""
