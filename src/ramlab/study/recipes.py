"""A study keeps the recipes it started with: STUDY/recipes/NAME.yaml.

A group with `recipe:` trains each run from a committed recipe (`ramlab/presets/recipes/`).
The paper study runs for days; a recipe changed meanwhile (a commit, a pull) would train its
later runs on another version than its first ones, and the study would then refuse the
earlier runs as made "with another config". So when a study starts it saves every recipe
its groups use into its folder, and from then on its jobs, in this process or any other,
read those copies. To take a changed recipe, delete its copy and the runs trained with it.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from ramlab.config import load_yaml, save_yaml
from ramlab.study.preset import Preset

FOLDER = "recipes"


def used(preset: Preset) -> dict[str, dict]:
    """Every recipe the preset's groups train from, by name, as the preset holds it."""
    return {name: values for group in preset.runs for name, values in group.recipes.items()}


def kept(preset: Preset, out: Path) -> tuple[Preset, list[str]]:
    """The preset with the recipes the study in `out` started with, where it saved them, and
    the names of those that differ from what the preset read (the packaged ones changed)."""
    folder = Path(out) / FOLDER
    if not folder.is_dir():
        return preset, []
    packaged = used(preset)
    saved = {
        name: load_yaml(folder / f"{name}.yaml") for name in packaged if (folder / f"{name}.yaml").is_file()
    }
    if not saved:
        return preset, []
    changed = sorted(name for name in saved if saved[name] != packaged[name])
    groups = tuple(
        replace(group, recipes={name: saved.get(name, values) for name, values in group.recipes.items()})
        for group in preset.runs
    )
    return replace(preset, runs=groups), changed


def save(preset: Preset, out: Path) -> list[str]:
    """Save each recipe the preset uses into STUDY/recipes/ unless the study has it already;
    returns the names saved now."""
    saved = []
    for name, values in used(preset).items():
        path = Path(out) / FOLDER / f"{name}.yaml"
        if not path.is_file():
            save_yaml(
                path, values, header=f"the {name} recipe this study started with (ramlab.study.recipes)"
            )
            saved.append(name)
    return saved


def late_note(names: list[str], out: Path) -> str:
    """For recipes copied only now into a study that has runs already (begun before studies
    kept their recipes): the copy is today's recipe, not necessarily the runs' one."""
    return (
        f"note: this study began before studies kept their recipes; {', '.join(names)} copied into "
        f"{Path(out) / FOLDER} now. If one changed since the study's first runs, put the version they "
        "trained with there (git show COMMIT:src/ramlab/presets/recipes/NAME.yaml)"
    )


def changed_note(names: list[str], out: Path) -> str:
    folder = Path(out) / FOLDER
    return (
        f"note: this study keeps the recipe(s) it started with ({', '.join(names)}, in {folder}); the "
        "packaged ones changed since. To take a new one, delete its file there and the runs trained with it"
    )
