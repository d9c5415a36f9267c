"""Typed options with generated flags (taming/flags.py): fields, helpers' flags, groups and bases."""
from __future__ import annotations

from dataclasses import dataclass

import pytest

from taming.cli import eval as eval_cli
from taming.cli.sample import SampleOptions, build_parser
from taming.cli.sampling_args import SamplingOptions
from taming.config import ConfigError
from taming.flags import flag, from_namespace, group, parse, parser_value_flags, split_overrides, value_flags


@dataclass
class Devices:  # a group of flags several commands take (e.g. where and on how many processes to run)
    accelerator: str | None = flag("--accelerator")
    num_nodes: int = flag("--num_nodes", default=1, type=int)


@dataclass
class Options(SamplingOptions):
    out: str = flag("-o", required=True)
    devices: Devices = group(Devices)


def test_fields_bases_groups_and_helper_flags_parse_into_one_typed_value():
    opts = parse(Options, ["-o", "x", "--top-k", "5", "--num_nodes", "2", "--precision", "fp32"], "taming t", "")
    assert opts == Options(out="x", top_k=5, precision="fp32", devices=Devices(num_nodes=2))
    assert opts.spec("fp32", keep_rows=2).keep_rows == 2 and opts.spec("fp32").top_k == 5
    assert value_flags(Options) >= {"-o", "--accelerator", "--num_nodes", "--top-k", "-k"}
    with pytest.raises(ConfigError, match="the following arguments are required: -o"):
        parse(Options, [], "taming t", "")
    with pytest.raises(ConfigError, match="argument --temperature/-t: must be a finite number > 0, got 'nan'"):
        parse(Options, ["-o", "x", "--temperature", "nan"], "taming t", "")


def test_commands_parse_their_option_dataclasses():
    opts = from_namespace(SampleOptions, build_parser().parse_args(["-r", "RUN", "-n", "3", "-o", "OUT", "-p", "0.5"]))
    assert (opts.run, opts.n_samples, opts.outdir, opts.top_p, opts.top_k, opts.precision) == ("RUN", 3, "OUT", 0.5,
                                                                                              250, "auto")
    lk = eval_cli.parse(["likelihood", "-r", "RUN", "--limit", "4"])
    assert type(lk) is eval_cli.RunOptions and (lk.what, lk.run, lk.limit, lk.split) == ("likelihood", "RUN", 4,
                                                                                         "validation")
    assert type(eval_cli.parse(["samples", "--real", "a", "--fake", "b"])) is eval_cli.SamplesOptions


def test_overrides_are_split_from_flags_that_take_a_value():
    parser = build_parser()
    assert split_overrides(["-o", "a=b", "x.y=1", "--seed", "2"], parser_value_flags(parser)) == (
        ["-o", "a=b", "--seed", "2"], ["x.y=1"])
