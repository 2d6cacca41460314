#!/usr/bin/env python3
"""Checks template.yaml's connection budget (docs/operations.md, "Connection budget").

Each function instance opens up to DB_MAX_CONNECTIONS connections and a function runs at most
its ReservedConcurrentExecutions instances at once, so the database's pooler must serve

    sum over functions of ReservedConcurrentExecutions x DB_MAX_CONNECTIONS

connections at once; that sum must stay within the DatabaseMaxConnections parameter.
CloudFormation's rules cannot do arithmetic, so this script does it: with the template's
defaults, with each environment of samconfig.toml (its parameter_overrides), and with the
overrides given on the command line (as `sam deploy --parameter-overrides` takes them).

    connection_budget.py [--template template.yaml] [--samconfig samconfig.toml]
                         [--config-env NAME] [--parameter-overrides "K=V K=V"]

Prints one table per case checked; exits 1 if any is over its budget, or if a function has
no reserved concurrency (then nothing bounds its connections). Needs PyYAML.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tomllib
from pathlib import Path

import yaml

# The code's default when DB_MAX_CONNECTIONS is not set (shared/src/infra/config.rs).
DEFAULT_DB_MAX_CONNECTIONS = 2


class _CfnLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short tags (!Ref X becomes {"Ref": "X"})."""


def _tag(loader: yaml.Loader, suffix: str, node: yaml.Node):
    name = "Ref" if suffix == "Ref" else f"Fn::{suffix}"
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {name: value}


_CfnLoader.add_multi_constructor("!", _tag)


def parse_overrides(text: str | list[str]) -> dict[str, str]:
    """`K=V K2="a b"` (or a list of such) as sam deploy reads parameter_overrides."""
    items = text if isinstance(text, list) else shlex.split(text)
    overrides = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"connection-budget: not K=V: {item!r}")
        overrides[key] = value
    return overrides


def check(template: dict, overrides: dict[str, str]) -> tuple[list[str], bool]:
    """The table's lines and whether the budget holds."""
    parameters = {name: str(p.get("Default", "")) for name, p in template.get("Parameters", {}).items()}
    unknown = sorted(set(overrides) - set(parameters))
    if unknown:
        return [f"  unknown parameters: {', '.join(unknown)}"], False
    parameters.update(overrides)

    def value(node, what: str) -> int:
        if isinstance(node, dict) and set(node) == {"Ref"}:
            node = parameters.get(node["Ref"], "")
        try:
            return int(str(node))
        except ValueError:
            raise SystemExit(f"connection-budget: {what} is {node!r}, not a number") from None

    globals_ = template.get("Globals", {}).get("Function", {})
    global_env = globals_.get("Environment", {}).get("Variables", {})
    lines, total, holds = [], 0, True
    lines.append(f"  {'function':<30} {'reserved':>8} {'conns':>5} {'total':>6}")
    for name, resource in template.get("Resources", {}).items():
        if resource.get("Type") != "AWS::Serverless::Function":
            continue
        props = resource.get("Properties", {})
        reserved = props.get("ReservedConcurrentExecutions", globals_.get("ReservedConcurrentExecutions"))
        env = {**global_env, **props.get("Environment", {}).get("Variables", {})}
        per_instance = value(env.get("DB_MAX_CONNECTIONS", DEFAULT_DB_MAX_CONNECTIONS), f"{name}'s DB_MAX_CONNECTIONS")
        if reserved is None:
            lines.append(f"  {name:<30} {'none':>8} {per_instance:>5} {'∞':>6}  no reserved concurrency")
            holds = False
            continue
        reserved = value(reserved, f"{name}'s ReservedConcurrentExecutions")
        total += reserved * per_instance
        lines.append(f"  {name:<30} {reserved:>8} {per_instance:>5} {reserved * per_instance:>6}")
    budget = value({"Ref": "DatabaseMaxConnections"}, "DatabaseMaxConnections")
    holds = holds and total <= budget
    lines.append(f"  {'sum':<30} {'':>8} {'':>5} {total:>6}  {'<=' if total <= budget else '>'} DatabaseMaxConnections {budget}")
    return lines, holds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--template", default="template.yaml")
    parser.add_argument("--samconfig", default="samconfig.toml", help="its environments are checked too")
    parser.add_argument("--config-env", help="only this environment of samconfig.toml")
    parser.add_argument("--parameter-overrides", default=None, help='"K=V K=V", on top of the environment')
    args = parser.parse_args()

    template = yaml.load(Path(args.template).read_text(), Loader=_CfnLoader)  # noqa: S506 - SafeLoader
    cases: list[tuple[str, dict[str, str]]] = []
    samconfig = Path(args.samconfig)
    environments = tomllib.loads(samconfig.read_text()) if samconfig.is_file() else {}
    extra = parse_overrides(args.parameter_overrides) if args.parameter_overrides else {}
    if args.config_env:
        deploy = environments.get(args.config_env, {}).get("deploy", {}).get("parameters")
        if deploy is None:
            raise SystemExit(f"connection-budget: no [{args.config_env}.deploy.parameters] in {samconfig}")
        cases.append((args.config_env, {**parse_overrides(deploy.get("parameter_overrides", "")), **extra}))
    else:
        cases.append(("template defaults" + (" + overrides" if extra else ""), extra))
        if not extra:
            for env_name, sections in environments.items():
                deploy = sections.get("deploy", {}).get("parameters") if isinstance(sections, dict) else None
                if deploy is not None:
                    cases.append((f"{samconfig.name} [{env_name}]", parse_overrides(deploy.get("parameter_overrides", ""))))

    failed = 0
    for name, overrides in cases:
        lines, holds = check(template, overrides)
        print(f"{name}: {'within budget' if holds else 'OVER BUDGET'}")
        print("\n".join(lines))
        failed += not holds
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
