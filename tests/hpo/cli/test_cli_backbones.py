"""`vcr-hpo backbones` prints one row per registered backbone with library-reported facts."""

from __future__ import annotations

from backbones import BACKBONES, create_backbone
from hpo.cli import main


def test_backbones_table(capsys):
    assert main(["backbones"]) == 0
    out = capsys.readouterr().out.splitlines()
    rows = {line.split()[0]: line.split() for line in out[2:]}
    assert set(rows) == set(BACKBONES.names())
    for name in ("resnet50", "efficientnet_b3", "mobilenetv3_large_100"):
        b = create_backbone(name)
        ch = b.get_feature_channels()
        assert rows[name][1] == BACKBONES.get(name).family
        assert rows[name][2] == "/".join(str(ch[k]) for k in ("c2", "c3", "c4", "c5"))
        assert rows[name][3] == "4/8/16/32"
        assert rows[name][4] == f"{b.num_params() / 1e6:.2f}M"


def test_unknown_command_exits_2(capsys):
    assert main(["frobnicate"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "invalid choice" in err
