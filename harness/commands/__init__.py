"""One module per `klp-harness` subcommand; each exposes `add_arguments` and `main`."""
