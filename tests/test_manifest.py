"""The manifest tells which rank checks which file, and finds every kind of damage."""

from __future__ import annotations

from shardwise.manifest import describe, owner, problem, share, size_problem

NAMES = [".metadata", "__0_0.distcp", "__1_0.distcp", "__2_0.distcp", "__3_0.distcp", "rng-rank0.pt", "rng-rank1.pt",
         "rng-rank2.pt", "rng-rank3.pt", "config.json"]


def test_each_file_is_checked_by_one_rank_near_its_writer():
    assert [owner(n) for n in NAMES] == [0, 0, 1, 2, 3, 0, 1, 2, 3, 0]
    shares = [share(NAMES, rank, world=2) for rank in range(2)]
    assert sorted(shares[0] + shares[1]) == sorted(NAMES)
    assert shares[1] == ["__1_0.distcp", "__3_0.distcp", "rng-rank1.pt", "rng-rank3.pt"]


def test_damage_is_found(tmp_path):
    for name in ("a", "b", "c"):
        (tmp_path / name).write_bytes(name.encode() * 1000)
    files = describe(tmp_path, ["a", "b", "c"])
    assert all(problem(tmp_path, n, e) is None for n, e in files.items())
    (tmp_path / "a").write_bytes(b"a" * 999)
    (tmp_path / "b").write_bytes(b"x" + b"b" * 999)
    (tmp_path / "c").unlink()
    assert size_problem(tmp_path, "a", files["a"]) == "a has 999 bytes, the manifest says 1000"
    assert size_problem(tmp_path, "b", files["b"]) is None
    assert problem(tmp_path, "b", files["b"]) == "b does not match its checksum"
    assert problem(tmp_path, "c", files["c"]) == "c is missing"
