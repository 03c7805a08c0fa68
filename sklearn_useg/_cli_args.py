"""Command-line value parsers shared by the CLI and the benchmark."""

import argparse
import ast


def parse_param(text):
    """``KEY=VALUE`` as ``(key, value)``, the value a Python literal when it is one."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"--param expects key=value, got {text!r}")
    try:
        return key, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return key, value


def parse_method_param(text):
    """``METHOD:KEY=VALUE`` as ``(method, key, value)`` (see :func:`parse_param`)."""
    method, sep, param = text.partition(":")
    if not sep or not method:
        raise argparse.ArgumentTypeError(
            f"--param expects METHOD:KEY=VALUE (e.g. kmeans:n_clusters=2), got {text!r}")
    return (method, *parse_param(param))
