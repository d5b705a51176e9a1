"""The `nnparity` subcommands, one module each: `add_arguments(parser)` and `main(args) -> int`.

A command parses and validates its options, calls the libraries below it (bench.results,
bench.agreement, bench.timing, bench.regress, bench.report, bench.study, bench.race, ...)
and turns their results into output and an exit code. No library module imports a command;
`bench.cli.COMMANDS` registers them by name.
"""
