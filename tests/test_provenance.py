"""The commit a result names: "-dirty" for edited or new (untracked) source files, and none
for a copy of the package installed inside the checkout's ignored folders."""

from __future__ import annotations

import subprocess

import pytest

from ramlab.provenance import git_commit


def git(repo, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True)
    return done.stdout.strip()


@pytest.fixture
def repo(tmp_path):
    """A checkout with its package in pkg/ and an ignored .venv/."""
    git(tmp_path, "init", "-q")
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "a.py").write_text("x = 1\n")
    (tmp_path / ".gitignore").write_text(".venv/\n")
    git(tmp_path, "add", ".")
    git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one")
    return tmp_path


def test_no_checkout_has_no_commit_and_an_edit_makes_it_dirty(repo, tmp_path_factory):
    assert git_commit(tmp_path_factory.mktemp("elsewhere")) is None
    head = git(repo, "rev-parse", "HEAD")
    (repo / ".gitignore").write_text(".venv/\nbuild/\n")  # a tracked file, anywhere in the tree
    assert git_commit(repo / "pkg") == f"{head}-dirty"


def test_a_new_module_in_the_package_makes_it_dirty(repo):
    head = git(repo, "rev-parse", "HEAD")
    assert git_commit(repo / "pkg") == head
    (repo / "notes.txt").write_text("untracked, outside the package\n")
    assert git_commit(repo / "pkg") == head
    (repo / "pkg" / "new.py").write_text("y = 2\n")  # imported, never added: it was clean
    assert git_commit(repo / "pkg") == f"{head}-dirty"


def test_a_copy_installed_in_an_ignored_folder_names_no_commit(repo):
    copy = repo / ".venv" / "site-packages" / "pkg"
    copy.mkdir(parents=True)
    assert git_commit(copy) is None  # it named the checkout's HEAD, not the copy's code


def test_an_untracked_copy_inside_another_repository_names_no_commit(repo):
    copy = repo / "site" / "pkg"  # not ignored, not tracked: e.g. a $HOME kept in git
    copy.mkdir(parents=True)
    (copy / "a.py").write_text("x = 1\n")
    assert git_commit(copy) is None  # it named that repository's HEAD, dirty
