"""Files on disk -> validated, frozen domain objects."""
