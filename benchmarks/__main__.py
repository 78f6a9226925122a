"""Run every benchmarks/bench_*.py module and print their results as one table."""

from __future__ import annotations

import importlib
import pkgutil
import sys

import benchmarks


def discover() -> list[str]:
    """Names of the bench_* modules in this package, sorted."""
    return sorted(
        f"benchmarks.{info.name}" for info in pkgutil.iter_modules(benchmarks.__path__)
        if info.name.startswith("bench_")
    )


def main(selected: list[str]) -> int:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="attnviz benchmarks")
    for column in ("benchmark", "measurement", "value", "target", "ok"):
        table.add_column(column, justify="right" if column in ("value", "target") else "left")
    for module_name in discover():
        short = module_name.removeprefix("benchmarks.")
        if selected and short not in selected and short.removeprefix("bench_") not in selected:
            continue
        for result in importlib.import_module(module_name).run():
            target = result.get("target")
            ok = result.get("ok")
            table.add_row(
                short, result["name"], f"{result['value']:.3g} {result['unit']}",
                "" if target is None else f"{target:g} {result['unit']}",
                {True: "[green]yes[/]", False: "[red]no[/]", None: ""}[ok],
            )
    Console().print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
