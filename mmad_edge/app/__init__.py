"""Applications built on every room (the demo pipeline and the CLI's logic); only the CLI imports them."""
