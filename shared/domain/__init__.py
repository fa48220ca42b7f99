"""Pure, side-effect-free logic shared by both sides. Imports no I/O library."""
