"""The SLURM test harness puts back a configuration a killed session left behind."""

import fcntl

import slurm_harness
from slurm_harness import BACKUP_SUFFIX, CONFIG_MARKER, clear_interrupted_config


def _etc(tmp_path, monkeypatch, ours: bool):
    etc = tmp_path / "slurm"
    etc.mkdir()
    monkeypatch.setattr(slurm_harness, "SLURM_ETC", etc)
    monkeypatch.setattr(slurm_harness, "LOCK_FILE", tmp_path / "lock")
    (etc / "slurm.conf").write_text((CONFIG_MARKER + " for a test cluster\n") if ours else "ClusterName=site\n")
    (etc / "gres.conf").write_text("# ours\n")
    (etc / ("slurm.conf" + BACKUP_SUFFIX)).write_text("ClusterName=original\n")
    return etc


def test_a_killed_sessions_config_is_replaced_by_the_original(tmp_path, monkeypatch):
    etc = _etc(tmp_path, monkeypatch, ours=True)
    assert clear_interrupted_config()
    assert (etc / "slurm.conf").read_text() == "ClusterName=original\n" and not (etc / "gres.conf").exists()


def test_a_running_sessions_config_and_a_sites_own_are_left_alone(tmp_path, monkeypatch):
    etc = _etc(tmp_path, monkeypatch, ours=True)
    with (tmp_path / "lock").open("w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        assert not clear_interrupted_config()
    assert (etc / "slurm.conf").read_text().startswith(CONFIG_MARKER)
    site = _etc(tmp_path / "site", monkeypatch, ours=False) if (tmp_path / "site").mkdir() is None else None
    assert not clear_interrupted_config() and (site / "slurm.conf").read_text() == "ClusterName=site\n"
