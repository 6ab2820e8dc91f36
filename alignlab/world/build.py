"""Build a toy world on disk: knowledge base, corpus, datasets and tokenizer, cached and verified.

``build_world`` writes everything into one directory (default: the user cache directory, keyed by
alignlab version, seed and size) and writes ``manifest.json`` (every file with its sha256) last and
atomically. A later call trusts the directory only if the manifest verifies, so an interrupted build,
a truncated file or an edited file is rebuilt instead of crashing a training run.

Pretraining the base model is not part of this step: the lead's training loop pretrains it on
``paths.corpus_chat`` and ``paths.corpus_text`` with ``paths.tokenizer`` and saves it next to these files.

Example::

    >>> from alignlab.world.build import build_world
    >>> paths = build_world("/tmp/world", seed=0, size="small")    # doctest: +SKIP
    >>> paths.datasets["pairs_train"].name                          # doctest: +SKIP
    'pairs_train.jsonl'
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from alignlab.core.io import atomic_write_json
from alignlab.errors import WorldError
from alignlab.world.canaries import make_canaries, plant_canaries
from alignlab.world.datasets import World, write_datasets, write_jsonl
from alignlab.world.kb import KnowledgeBase, check_seed, check_size
from alignlab.world.tokenizer import corpus_texts, train_tokenizer

MANIFEST = "manifest.json"
CANARIES = "canaries.jsonl"  # the planted canaries, one JSON object a line (only in worlds built with canaries)
MANIFEST_FORMAT = 4  # bumped when generators change, so cached worlds are rebuilt


@dataclass(frozen=True)
class WorldPaths:
    """Where a built world's files are."""

    root: Path
    seed: int
    size: str
    kb: Path  # kb.json: the knowledge base, held-out countries included (for graders, not for training)
    corpus_chat: Path  # corpus_chat.jsonl: pretraining transcripts, {"messages": [...]}
    corpus_text: Path  # corpus_text.jsonl: pretraining knowledge-base prose, {"text": str}
    tokenizer: Path  # a save_pretrained directory: AutoTokenizer.from_pretrained(paths.tokenizer)
    datasets: dict[str, Path] = field(default_factory=dict)  # name -> JSONL (see datasets.py)
    manifest: Path | None = None


@dataclass
class WorldBuildConfig:
    """Write a toy world's knowledge base, corpus, datasets and tokenizer (cached and verified)."""

    output: str | None = None
    """directory (null: the user cache, keyed by alignlab version, seed and size)"""
    seed: int = 0
    """world seed"""
    size: str = "small"
    """small, medium or oversight (the small world plus the skills scalable oversight needs)"""
    force: bool = False
    """rebuild even if a verified build exists"""
    canaries: list[int] = field(default_factory=list)
    """opt-in: plant one phone-number and one address canary per repetition count in the corpus, e.g. [1, 4, 16]
    (empty: none, the world is unchanged)"""


def alignlab_version() -> str:
    try:
        return metadata.version("alignlab")
    except metadata.PackageNotFoundError:
        return "unknown"


def default_world_dir(seed: int = 0, size: str = "small", canaries: list[int] | tuple[int, ...] = ()) -> Path:
    """The cache directory of world (seed, size[, planted canaries]) for this alignlab version."""
    from platformdirs import user_cache_dir

    planted = "-canaries" + "-".join(map(str, canaries)) if canaries else ""
    return Path(user_cache_dir("alignlab")) / "worlds" / f"v{alignlab_version()}-seed{seed}-{size}{planted}"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_manifest(root: Path, seed: int, size: str, canaries: list[int] | tuple[int, ...] = ()) -> str | None:
    """Why the world in ``root`` cannot be trusted, or None when its manifest verifies."""
    path = root / MANIFEST
    if not path.exists():
        return "no manifest (never built, or the build was interrupted)"
    try:
        manifest = json.loads(path.read_text())
        files = manifest["files"]
        expected = (MANIFEST_FORMAT, alignlab_version(), seed, size)
        found = (manifest["format"], manifest["alignlab_version"], manifest["seed"], manifest["size"])
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        return f"unreadable manifest ({err})"
    if found != expected:
        return f"manifest is for (format, version, seed, size) = {found}, not {expected}"
    if manifest.get("canaries", []) != list(canaries):
        return f"manifest has canaries {manifest.get('canaries', [])}, not {list(canaries)}"
    for rel, digest in files.items():
        file = root / rel
        if not file.is_file():
            return f"missing file {rel}"
        if sha256_file(file) != digest:
            return f"file {rel} does not match its checksum"
    return None


def _paths(root: Path, seed: int, size: str, datasets: dict[str, Path]) -> WorldPaths:
    return WorldPaths(
        root=root,
        seed=seed,
        size=size,
        kb=root / "kb.json",
        corpus_chat=root / "corpus_chat.jsonl",
        corpus_text=root / "corpus_text.jsonl",
        tokenizer=root / "tokenizer",
        datasets=datasets,
        manifest=root / MANIFEST,
    )


def _dataset_names(root: Path) -> dict[str, Path]:
    files = json.loads((root / MANIFEST).read_text())["files"]
    return {Path(rel).stem: root / rel for rel in files if rel.startswith("datasets/")}


def entity_names(kb: KnowledgeBase) -> list[str]:
    """Every generated name of the world (countries, capitals, rivers, groups), held-out ones included."""
    countries = kb.countries + kb.unknown_train + kb.unknown_eval
    return [n for c in countries for n in (c.name, c.capital, c.river)] + [g.name for g in kb.groups]


def build_world(
    output_dir: str | Path | None = WorldBuildConfig.output,
    seed: int = WorldBuildConfig.seed,
    size: str = WorldBuildConfig.size,
    *,
    force: bool = WorldBuildConfig.force,
    canaries: list[int] | tuple[int, ...] = (),
    verbose: bool = True,
) -> WorldPaths:
    """Build (or reuse) the world ``seed``/``size`` in ``output_dir`` (default: the user cache).

    A directory whose manifest verifies is reused unless ``force``; anything else is rebuilt. Only
    files of the world's layout are (over)written, so an ``output_dir`` shared with other files is safe.
    The defaults are :class:`WorldBuildConfig`'s (``alignlab world build``'s options). ``canaries`` (opt-in)
    plants secrets in the corpus text (:mod:`alignlab.world.canaries`) and lists them in ``canaries.jsonl``.
    """
    check_seed(seed)
    check_size(size)
    canaries = [int(r) for r in canaries]
    root = Path(output_dir) if output_dir is not None else default_world_dir(seed, size, canaries)

    def say(message: str) -> None:
        if verbose:
            print(f"[world seed={seed} size={size}] {message}", flush=True)

    problem = "rebuild forced" if force else verify_manifest(root, seed, size, canaries)
    if problem is None:
        say(f"using the cached world in {root}")
        return _paths(root, seed, size, _dataset_names(root))
    say(f"building in {root} ({problem})")
    try:
        root.mkdir(parents=True, exist_ok=True)
        (root / MANIFEST).unlink(missing_ok=True)  # first, so an interrupted rebuild is never trusted
    except OSError as err:
        raise WorldError(f"cannot write the world to {root}: {err}") from err

    world = World(seed, size)
    paths = _paths(root, seed, size, {})
    paths.kb.write_text(json.dumps(world.kb.to_dict(), indent=1) + "\n")
    say(
        f"knowledge base: {len(world.kb.countries)} known countries, "
        f"{len(world.kb.unknown_train) + len(world.kb.unknown_eval)} held out, {len(world.kb.groups)} groups"
    )
    chat, clean_text = world.corpus_transcripts(), world.corpus_documents()
    text, planted = clean_text, make_canaries(seed, canaries) if canaries else []
    if planted:  # their own random stream, so the rest of the corpus is the canary-free world's
        texts = plant_canaries([row["text"] for row in text], planted, random.Random(f"alignlab-plant-{seed}"))
        text = [{"text": t} for t in texts]
        write_jsonl(root / CANARIES, [c.to_dict() for c in planted])
        say(f"canaries: {len(planted)} planted, {sum(c.repeats for c in planted)} copies")
    write_jsonl(paths.corpus_chat, chat)
    write_jsonl(paths.corpus_text, text)
    say(f"corpus: {len(chat)} transcripts, {len(text)} knowledge-base documents")
    datasets = write_datasets(world, root / "datasets")
    say("datasets: " + ", ".join(f"{name} ({p.read_text().count(chr(10))})" for name, p in datasets.items()))
    # the canary-free corpus trains the vocabulary: canaries never shape it, and models of both worlds share it
    tokenizer = train_tokenizer(corpus_texts(chat + clean_text), names=entity_names(world.kb))
    tokenizer.save_pretrained(str(paths.tokenizer))
    say(f"tokenizer: byte-level BPE, {len(tokenizer)} tokens")

    files = [
        paths.kb,
        paths.corpus_chat,
        paths.corpus_text,
        *datasets.values(),
        *sorted(paths.tokenizer.iterdir()),
        *([root / CANARIES] if planted else []),
    ]
    manifest = {
        "format": MANIFEST_FORMAT,
        "alignlab_version": alignlab_version(),
        "seed": seed,
        "size": size,
        "files": {str(f.relative_to(root)): sha256_file(f) for f in files},
        **({"canaries": canaries} if canaries else {}),  # absent by default: existing manifests stay valid
    }
    atomic_write_json(root / MANIFEST, manifest)
    say("done")
    return _paths(root, seed, size, datasets)
