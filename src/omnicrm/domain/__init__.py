"""Pure business logic: no I/O, no framework, no clock or randomness of its own."""
