"""The local Hub API server answers the real `huggingface_hub` client the way the Hub does, so the
publish tests exercise real client code paths (errors mapped to the library's exceptions included)."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from hub_api_server import HubServer
from hub_fixtures import HUB_USER
from huggingface_hub import DatasetCard, HfApi, HfFileSystem
from huggingface_hub.errors import (
    EntryNotFoundError,
    HfHubHTTPError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

_numbers = itertools.count()


@pytest.fixture
def repo(hub: HubServer) -> str:
    repo_id = f"{HUB_USER}/server-test-{next(_numbers)}"
    HfApi().create_repo(repo_id, repo_type="dataset", private=True)
    return repo_id


def test_whoami_and_bad_token(hub: HubServer):
    assert HfApi().whoami()["name"] == HUB_USER
    with pytest.raises(HfHubHTTPError) as info:
        HfApi(token="hf_not_a_real_token_123").whoami()
    assert info.value.response.status_code == 401


def test_create_repo_conflict_and_exist_ok(repo: str):
    api = HfApi()
    with pytest.raises(HfHubHTTPError) as info:
        api.create_repo(repo, repo_type="dataset")
    assert info.value.response.status_code == 409
    assert api.create_repo(repo, repo_type="dataset", exist_ok=True).repo_id == repo
    assert api.list_repo_files(repo, repo_type="dataset") == [".gitattributes"]


def test_upload_download_range_refs_and_errors(repo: str, hub: HubServer):
    api = HfApi()
    api.upload_file(
        path_or_fileobj=b"hello hub\n", path_in_repo="notes/a.txt", repo_id=repo, repo_type="dataset"
    )
    blob = bytes(range(256)) * 40
    info = api.upload_file(
        path_or_fileobj=blob, path_in_repo="data/x.parquet", repo_id=repo, repo_type="dataset"
    )
    assert hub.app.calls("lfs_upload") == 1  # parquet goes through LFS basic transfer

    api.create_tag(repo, tag="v1", revision=info.oid, repo_type="dataset")
    api.create_branch(repo, branch="dev", revision=info.oid, repo_type="dataset")
    refs = api.list_repo_refs(repo, repo_type="dataset")
    assert {t.name: t.target_commit for t in refs.tags} == {"v1": info.oid}
    assert {b.name for b in refs.branches} == {"main", "dev"}
    assert [c.title for c in api.list_repo_commits(repo, repo_type="dataset", revision="v1")][
        -1
    ] == "initial commit"

    path = api.hf_hub_download(repo, "data/x.parquet", repo_type="dataset", revision="v1")
    assert Path(path).read_bytes() == blob
    fs = HfFileSystem()
    with fs.open(f"datasets/{repo}@v1/data/x.parquet", "rb", block_size=100) as f:
        f.seek(5000)
        assert f.read(300) == blob[5000:5300]
    assert any(route == "resolve" and status == 206 for _, route, _, status in hub.requests)  # a Range read
    assert sorted(fs.ls(f"datasets/{repo}/notes", detail=False)) == [f"datasets/{repo}/notes/a.txt"]
    infos = api.get_paths_info(repo, ["data/x.parquet", "notes"], repo_type="dataset")
    assert [(i.path, getattr(i, "lfs", None) is not None) for i in infos] == [
        ("data/x.parquet", True),
        ("notes", False),
    ]

    with pytest.raises(EntryNotFoundError):
        api.hf_hub_download(repo, "missing.txt", repo_type="dataset")
    with pytest.raises(RevisionNotFoundError):
        api.list_repo_files(repo, repo_type="dataset", revision="no-such-branch")
    with pytest.raises(RepositoryNotFoundError):
        api.repo_info(f"{HUB_USER}/does-not-exist", repo_type="dataset")
    api.delete_tag(repo, tag="v1", repo_type="dataset")
    with pytest.raises(RevisionNotFoundError):
        api.delete_tag(repo, tag="v1", repo_type="dataset")


def test_parent_commit_check_and_card(repo: str):
    api = HfApi()
    head = api.repo_info(repo, repo_type="dataset").sha
    api.upload_file(
        path_or_fileobj=b"---\nlicense: mit\n---\n# Card\n",
        path_in_repo="README.md",
        repo_id=repo,
        repo_type="dataset",
    )
    assert DatasetCard.load(repo, repo_type="dataset").data.license == "mit"
    from huggingface_hub import CommitOperationAdd

    with pytest.raises(HfHubHTTPError) as info:
        api.create_commit(
            repo,
            [CommitOperationAdd("b.txt", b"b")],
            commit_message="stale parent",
            repo_type="dataset",
            parent_commit=head,
        )
    assert info.value.response.status_code == 412


def test_injected_failures_hit_the_named_route_only(repo: str, hub: HubServer):
    hub.app.inject_failures("refs", 1, 503)
    with pytest.raises(HfHubHTTPError) as info:
        HfApi().list_repo_refs(repo, repo_type="dataset")
    assert info.value.response.status_code == 503
    assert HfApi().list_repo_refs(repo, repo_type="dataset").branches[0].name == "main"
    with pytest.raises(ValueError):
        hub.app.inject_failures("no-such-route")


def test_commit_listing_is_paginated(repo: str, hub: HubServer):
    for i in range(60):
        hub.store.commit_files("dataset", repo, {f"f{i}.txt": b"%d" % i}, f"commit {i}")
    commits = HfApi().list_repo_commits(repo, repo_type="dataset")
    assert len(commits) == 61 and commits[0].title == "commit 59" and commits[-1].title == "initial commit"
    assert hub.app.calls("commits") == 2  # two pages, followed through the Link header


_IMPORTED_FIRST = """
import sys, tempfile
from pathlib import Path
import datasets, huggingface_hub  # imported before the env points at the test server
sys.path.insert(0, sys.argv[1])
from hub_api_server import HubServer
from hub_fixtures import point_clients_at
with HubServer(tokens={"hf_sub": "sub"}) as server:
    point_clients_at(server.url, Path(tempfile.mkdtemp()), "hf_sub")
    ds = datasets.Dataset.from_dict({"x": [1, 2, 3]})
    sha = ds.push_to_hub("sub/late", commit_message="late").oid
    huggingface_hub.HfApi().create_tag("sub/late", tag="t1", revision=sha, repo_type="dataset")
    print(datasets.load_dataset("sub/late", revision="t1", split="train").to_dict()["x"])
"""


def test_clients_imported_before_the_env_are_repointed(tmp_path: Path):
    """`point_clients_at` patches the import-time constants when the libraries were imported first."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "HF_ENDPOINT": "http://127.0.0.1:9", "HF_HOME": str(tmp_path / "hf")}
    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        env.pop(name, None)
    tests_dir = str(Path(__file__).parent)
    out = subprocess.run(
        [sys.executable, "-c", _IMPORTED_FIRST, tests_dir],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[1, 2, 3]"
