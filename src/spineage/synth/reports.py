"""Free-text radiology reports for the phantom cohort, written from its findings table.

The phantom draws findings per MRI series; :func:`write_report` turns them into
the kind of sagittal T2 whole-spine report a radiologist dictates, so that the
report reader meets varied, realistic text whose truth is known. Every finding
is stated exactly once, with its level and severity, and nothing that is present
is ever negated, so a careful reader can recover the findings table.

Conventions of the text (what a reader has to know):

- Discs are named by the vertebrae around them (``L4/5``, ``L4-5``, ``L4-L5``,
  ``L4/L5``, ``C7/T1``, ``C7-Th1``, ``T12/L1``, ``L5/S1``); the finding is keyed by
  the vertebra above. A run of consecutive discs with one condition and severity
  is written as a hyphen range between the top and bottom vertebrae (``L3-5`` or
  ``L3-L5`` is L3/4 and L4/5; ``C5-Th1`` is C5/6, C6/7 and C7/T1), a chain
  (``C4/5/6``), a list (``L3/4 and L4/5``) or ``L3/4 to L4/5``. A hyphen between
  two adjacent vertebrae is the single disc between them.
- Thoracic vertebrae are ``T``, ``Th`` or ``D`` (one style per report).
- ``T2`` followed by ``-weighted``, ``signal``, ``disc signal`` or ``hyperintense``
  is the MR sequence, never a level.
- Negations ("No fracture.", "Negative for spondylolisthesis."), hedges that
  deny ("... unlikely to represent metastasis.") and resolved findings ("The
  previously described disc herniation has resolved.", "Absent Modic
  changes.") appear only for conditions absent from the whole series.
- Real report styles, chosen at random per report: findings by condition or
  level by level ("L4/5: ...", "At L4/5, ...", "L4/5 level: ...", "L4-5 - ..."),
  where the discs without findings may be listed as normal ("L1/2 through
  L3/4: No disc herniation or stenosis.", "L2/3: normal."), an impression
  section, and normal-state sentences ("The conus terminates normally.",
  "Lordosis is preserved.", "Preservation of the normal lumbar lordosis.",
  the last two only without a curvature finding).

Example:
    >>> import numpy as np
    >>> from spineage.synth.reports import write_report
    >>> levels = [f"C{i}" for i in range(2, 8)] + [f"T{i}" for i in range(1, 13)]
    >>> levels += [f"L{i}" for i in range(1, 6)]
    >>> text = write_report(
    ...     [{"level": "L4", "condition": "disc_bulge", "severity": "mild"}],
    ...     levels,
    ...     np.random.default_rng(0),
    ... )
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from spineage.findings.vocabulary import (
    ALL_CONDITIONS,
    DEGENERATIVE_CONDITIONS,
    LEVELS,
    REGIONS,
    SEVERITY_ORDINAL,
    check_finding,
    region_of,
)

TYPO_RATE: float = 0.2
"""Share of reports given exactly one typo (the others have none)."""

TYPOS: dict[str, str] = {
    "appearance": "apperance",
    "visualised": "visualsied",
    "visualized": "visualzied",
    "normal": "normla",
    "alignment": "alignmnet",
    "maintained": "maintaned",
    "preserved": "preseved",
    "calibre": "calbire",
    "caliber": "calibar",
    "remaining": "remainig",
    "otherwise": "otherwsie",
    "limits": "limtis",
    "vertebrae": "vertebrea",
    "physiological": "physiologcal",
    "images": "imgaes",
}
"""Misspellings used for typos; they only ever hit sentences that state no finding."""

_NEGATING_WORDS: frozenset[str] = frozenset({"normal", "preserved", "maintained"})
"""Words that carry a negation ("Lordosis is preserved."): never misspelt in a sentence that denies."""

# Disc-keyed conditions: the level is the vertebra above the disc, so runs of
# consecutive levels can be written as ranges.
_DISC_KEYED: frozenset[str] = frozenset(DEGENERATIVE_CONDITIONS) | {"spinal_stenosis"}

_POSITION: dict[str, int] = {level: i for i, level in enumerate(LEVELS)}
_CONDITION_ORDER: dict[str, int] = {c: i for i, c in enumerate(ALL_CONDITIONS)}

# Phrases of disc-keyed findings as (singular, plural, kind). "{s}" takes the
# severity adjective and "{a}" the adverb; kind says how the phrase agrees with
# articles and verbs: "count" nouns take a/an and pluralise, "mass" nouns take
# "is" and no article, "plural" nouns take "are" and no article.
_DISC_PHRASES: dict[str, tuple[tuple[str, str, str], ...]] = {
    "disc_bulge": (
        ("{s} disc bulge", "{s} disc bulges", "count"),
        ("{s} disc bulge", "{s} disc bulges", "count"),
        ("{s} bulging disc", "{s} bulging discs", "count"),
        ("{s} diffuse disc bulging", "{s} diffuse disc bulging", "mass"),
        ("{s} broad-based disc bulge", "{s} broad-based disc bulges", "count"),
        ("{s} circumferential disc bulge", "{s} circumferential disc bulges", "count"),
    ),
    "disc_osteophyte_complex": (
        ("{s} disc-osteophyte complex", "{s} disc-osteophyte complexes", "count"),
        ("{s} disc osteophyte complex", "{s} disc osteophyte complexes", "count"),
        ("{s} disc-osteophyte complex", "{s} disc-osteophyte complexes", "count"),
        ("{s} disc-osteophyte bar", "{s} disc-osteophyte bars", "count"),
        ("{s} DOC", "{s} DOCs", "count"),
    ),
    "uncovertebral_osteophyte": (
        ("{s} uncovertebral osteophytes", "{s} uncovertebral osteophytes", "plural"),
        ("{s} uncovertebral osteophytes", "{s} uncovertebral osteophytes", "plural"),
        ("{s} uncovertebral joint hypertrophy", "{s} uncovertebral joint hypertrophy", "mass"),
        ("{s} uncovertebral hypertrophy", "{s} uncovertebral hypertrophy", "mass"),
        ("{s} uncovertebral spurring", "{s} uncovertebral spurring", "mass"),
    ),
    "protrusion": (
        ("{s} disc protrusion", "{s} disc protrusions", "count"),
        ("{s} disc protrusion", "{s} disc protrusions", "count"),
        ("{s} protrusion", "{s} protrusions", "count"),
        ("{s} focal disc protrusion", "{s} focal disc protrusions", "count"),
        ("{s} broad-based disc protrusion", "{s} broad-based disc protrusions", "count"),
        ("{s} disc herniation", "{s} disc herniations", "count"),
        ("{s} disc hernia", "{s} disc hernias", "count"),
    ),
    "extrusion": (
        ("{s} disc extrusion", "{s} disc extrusions", "count"),
        ("{s} disc extrusion", "{s} disc extrusions", "count"),
        ("{s} extruded disc", "{s} extruded discs", "count"),
        ("{s} extrusion", "{s} extrusions", "count"),
    ),
    "desiccation": (
        ("{s} disc desiccation", "{s} disc desiccation", "mass"),
        ("{s} disc desiccation", "{s} disc desiccation", "mass"),
        ("{s} desiccation", "{s} desiccation", "mass"),
        ("{s} disc dehydration", "{s} disc dehydration", "mass"),
        ("{s} loss of T2 disc signal", "{s} loss of T2 disc signal", "mass"),
        ("{a} desiccated disc", "{a} desiccated discs", "count"),
        ("{a} dehydrated disc", "{a} dehydrated discs", "count"),
    ),
    "endplate_change": (
        ("Modic changes", "Modic changes", "plural"),
        ("Modic type 1 endplate changes", "Modic type 1 endplate changes", "plural"),
        ("Modic type 2 endplate changes", "Modic type 2 endplate changes", "plural"),
        ("degenerative endplate changes", "degenerative endplate changes", "plural"),
        ("endplate signal changes", "endplate signal changes", "plural"),
    ),
    "annular_fissure": (
        ("annular fissure", "annular fissures", "count"),
        ("annular fissure", "annular fissures", "count"),
        ("annular tear", "annular tears", "count"),
        ("posterior annular fissure", "posterior annular fissures", "count"),
        ("high-intensity zone", "high-intensity zones", "count"),
        ("HIZ", "HIZs", "count"),
    ),
    "spinal_stenosis": (
        ("{s} spinal canal stenosis", "{s} spinal canal stenosis", "mass"),
        ("{s} central canal stenosis", "{s} central canal stenosis", "mass"),
        ("{s} canal stenosis", "{s} canal stenosis", "mass"),
        ("{s} spinal stenosis", "{s} spinal stenosis", "mass"),
    ),
}

# The plain name of each disc-keyed condition, for "Disc bulges: mild at ..., moderate at ...".
_DISC_LABELS: dict[str, tuple[str, ...]] = {
    "disc_bulge": ("disc bulges", "bulging discs", "disc bulging"),
    "disc_osteophyte_complex": ("disc-osteophyte complexes", "disc osteophyte complexes"),
    "uncovertebral_osteophyte": ("uncovertebral osteophytes", "uncovertebral joint hypertrophy"),
    "protrusion": ("disc protrusions", "protrusions", "disc herniations"),
    "extrusion": ("disc extrusions", "extrusions"),
    "desiccation": ("disc desiccation", "desiccation", "loss of T2 disc signal"),
    "spinal_stenosis": ("spinal canal stenosis", "canal stenosis"),
}

_ADJECTIVES: dict[str, tuple[str, ...]] = {
    "present": ("",),
    "mild": ("mild", "mild", "slight", "minimal"),
    "moderate": ("moderate",),
    "severe": ("severe", "severe", "marked"),
    "near_complete": ("near complete", "near-complete", "almost complete"),
}
_ADVERBS: dict[str, tuple[str, ...]] = {
    "present": ("",),
    "mild": ("mildly", "slightly", "minimally"),
    "moderate": ("moderately",),
    "severe": ("severely", "markedly"),
    "near_complete": ("almost completely", "nearly completely"),
}
# "Advanced" reads naturally only for wear-and-tear changes, not for a bulge or a canal.
_ADVANCED_OK: frozenset[str] = frozenset(
    {"desiccation", "disc_osteophyte_complex", "uncovertebral_osteophyte"}
)

_GRADES: dict[str, tuple[str, str]] = {"mild": ("1", "I"), "moderate": ("2", "II"), "severe": ("3", "III")}

_REGION_EMPTY: tuple[str, ...] = (
    "Unremarkable.",
    "No significant abnormality.",
    "No significant finding.",
    "Normal appearance.",
    "Within normal limits.",
    "Unremarkable appearance.",
)


@dataclass
class _Sentence:
    """One sentence of the report; ``neutral`` ones state no finding and may take a typo."""

    text: str
    neutral: bool = False
    negation: bool = False


@dataclass
class _Paragraph:
    """A block of the report: an optional label and its sentences."""

    label: str
    sentences: list[_Sentence] = field(default_factory=list)
    label_on_own_line: bool = False
    one_per_line: bool = False


def vertebra_below(level: str, levels_present: Sequence[str]) -> str:
    """Return the vertebra below ``level``, i.e. the lower half of the disc keyed by ``level``.

    The spine's own levels decide: below the last lumbar vertebra is ``S1``,
    below C7 is ``T1`` and below the last thoracic vertebra (T12, or T13 where
    present) is ``L1``.

    Args:
        level: a vertebral level, e.g. ``"L5"``.
        levels_present: the subject's vertebrae, top to bottom.

    Example:
        >>> vertebra_below("L5", ["L4", "L5"]), vertebra_below("C7", ["C7", "T1"])
        ('S1', 'T1')
    """
    order = list(levels_present)
    if level in order and order.index(level) + 1 < len(order):
        return order[order.index(level) + 1]
    region, number = region_of(level), int(level[1:])
    if region == "lumbar":
        return "S1"
    if region == "cervical":
        return "T1" if number == 7 else f"C{number + 1}"
    if number >= 12:
        return "T13" if number == 12 and "T13" in order else "L1"
    return f"T{number + 1}"


def format_disc(level: str, levels_present: Sequence[str]) -> str:
    """Return the canonical name of the disc keyed by ``level``: ``L4/5``, ``C7/T1``, ``L5/S1``.

    Args:
        level: the vertebra above the disc.
        levels_present: the subject's vertebrae, top to bottom.

    Example:
        >>> format_disc("C5", ["C5", "C6"]), format_disc("T12", ["T12", "L1"])
        ('C5/6', 'T12/L1')
    """
    lower = vertebra_below(level, levels_present)
    if lower[0] == level[0]:
        return f"{level}/{lower[1:]}"
    return f"{level}/{lower}"


def write_report(findings: list[dict], levels_present: Sequence[str], rng: np.random.Generator) -> str:
    """Return a free-text sagittal T2 whole-spine MRI report for one series.

    Args:
        findings: dicts with ``level`` (a level of the vocabulary, or ``""`` for
            per-scan findings), ``condition`` and ``severity``; disc findings are
            keyed by the vertebra above the disc.
        levels_present: the subject's vertebrae, top to bottom; decides which disc
            lies below the last vertebra of each region (C7/T1, T12/L1, L5/S1).
        rng: the only source of variation; the same state gives the same text.

    Raises:
        ValueError: if a finding is outside the findings vocabulary.

    Example:
        >>> import numpy as np
        >>> levels = [f"C{i}" for i in range(2, 8)] + [f"T{i}" for i in range(1, 13)]
        >>> levels += ["L1", "L2", "L3", "L4", "L5"]
        >>> finding = {"level": "L5", "condition": "disc_bulge", "severity": "moderate"}
        >>> text = write_report([finding], levels, np.random.default_rng(3))
        >>> "L5/S1" in text or "L5-S1" in text
        True
    """
    return _ReportWriter(_validated(findings), tuple(levels_present), rng).write()


def _validated(findings: list[dict]) -> list[tuple[str, str, str]]:
    """Check each finding against the vocabulary; return (level, condition, severity) sorted top to bottom."""
    triples: list[tuple[str, str, str]] = []
    for finding in findings:
        try:
            level, condition, severity = finding["level"] or "", finding["condition"], finding["severity"]
        except KeyError as missing:
            raise ValueError(
                f"Expected a finding with level, condition and severity, found {finding!r} without {missing}"
            ) from None
        check_finding(condition, severity, level or None)
        if (level, condition, severity) not in triples:
            triples.append((level, condition, severity))
    # A canonical order makes the text depend on the findings, not on the order they came in.
    return sorted(triples, key=lambda t: (_POSITION.get(t[0], -1), _CONDITION_ORDER[t[1]], t[2]))


def _join(parts: Sequence[str]) -> str:
    """Join phrases as prose: ``a``, ``a and b``, ``a, b and c``."""
    if len(parts) <= 1:
        return "".join(parts)
    return ", ".join(parts[:-1]) + " and " + parts[-1]


def _capitalised(text: str) -> str:
    """Upper-case the first letter only (keeps ``T2``, ``HIZ`` and levels intact)."""
    return text[:1].upper() + text[1:]


def _tidy(text: str) -> str:
    """Collapse the gaps left by empty severity slots."""
    return " ".join(text.split()).replace("( ", "(").replace(" )", ")")


def _split_level(name: str) -> tuple[str, str]:
    """Split a written vertebra such as ``Th12`` into its letters and number."""
    match = re.fullmatch(r"([A-Za-z]+)(\d+)", name)
    assert match is not None, name
    return match.group(1), match.group(2)


class _ReportWriter:
    """Writes one report; holds the per-report style so that it stays consistent."""

    def __init__(self, findings: list[tuple[str, str, str]], levels_present: tuple[str, ...],
                 rng: np.random.Generator) -> None:
        self.findings = findings
        self.levels_present = levels_present
        self.rng = rng
        self.present = {condition for _, condition, _ in findings}
        # One notation per report, as one radiologist would dictate it.
        self.thoracic = self._pick(("T", "T", "T", "Th", "D"))
        self.disc_style = self._pick(("slash", "slash", "short", "full", "slash_full"))
        self.british = self._chance(0.5)
        self.header_style = self._pick(("upper", "upper", "title", "short", "abbrev", "inline"))

    # -- randomness -------------------------------------------------------------------

    def _pick(self, options: Sequence[str]) -> str:
        return options[int(self.rng.integers(len(options)))]

    def _chance(self, probability: float) -> bool:
        return bool(self.rng.random() < probability)

    # -- levels -----------------------------------------------------------------------

    def _vertebra(self, level: str) -> str:
        return self.thoracic + level[1:] if level.startswith("T") else level

    def _disc(self, level: str) -> str:
        upper = self._vertebra(level)
        lower = self._vertebra(vertebra_below(level, self.levels_present))
        (upper_letters, _), (lower_letters, lower_number) = _split_level(upper), _split_level(lower)
        same = upper_letters == lower_letters
        if self.disc_style == "slash":
            return f"{upper}/{lower_number}" if same else f"{upper}/{lower}"
        if self.disc_style == "short":
            return f"{upper}-{lower_number}" if same else f"{upper}-{lower}"
        if self.disc_style == "full":
            return f"{upper}-{lower}"
        return f"{upper}/{lower}"

    def _runs(self, levels: list[str]) -> list[list[str]]:
        """Split disc levels into runs of adjacent discs, top to bottom."""
        ordered = sorted(levels, key=_POSITION.__getitem__)
        runs = [[ordered[0]]]
        for level in ordered[1:]:
            if vertebra_below(runs[-1][-1], self.levels_present) == level:
                runs[-1].append(level)
            else:
                runs.append([level])
        return runs

    def _run_parts(self, run: list[str]) -> list[str]:
        """Write one run of adjacent discs as a range, a chain, or its discs one by one."""
        if len(run) == 1:
            return [self._disc(run[0])]
        names = [self._vertebra(level) for level in run]
        names.append(self._vertebra(vertebra_below(run[-1], self.levels_present)))
        letters = {_split_level(name)[0] for name in names}
        forms = ["hyphen", "hyphen", "list", "through"]
        if self.disc_style == "slash" and len(letters) == 1 and len(run) <= 3:
            forms += ["chain", "chain"]
        form = self._pick(forms)
        if form == "hyphen":
            first_letters, _ = _split_level(names[0])
            last_letters, last_number = _split_level(names[-1])
            abbreviate = first_letters == last_letters and self.disc_style in ("slash", "short")
            return [f"{names[0]}-{last_number if abbreviate else names[-1]}"]
        if form == "chain":
            return [names[0] + "".join("/" + _split_level(name)[1] for name in names[1:])]
        if form == "list":
            return [self._disc(level) for level in run]
        first, last = self._disc(run[0]), self._disc(run[-1])
        return [self._pick((f"{first} to {last}", f"{first} through {last}"))]

    def _levels_text(self, levels: list[str]) -> str:
        # Discs written one by one join the overall list, so "and" appears once.
        return _join([part for run in self._runs(levels) for part in self._run_parts(run)])

    # -- words ------------------------------------------------------------------------

    def _adjective(self, condition: str, severity: str) -> str:
        options = _ADJECTIVES[severity]
        if severity == "severe" and condition in _ADVANCED_OK:
            options = options + ("advanced",)
        return self._pick(options)

    def _disc_phrase(self, condition: str, severity: str, plural: bool) -> tuple[str, str]:
        """Return a noun phrase with its severity, and its agreement kind (count/mass/plural)."""
        singular, plural_form, kind = _DISC_PHRASES[condition][
            int(self.rng.integers(len(_DISC_PHRASES[condition])))
        ]
        template = plural_form if plural else singular
        adjective, adverb = self._adjective(condition, severity), self._pick(_ADVERBS[severity])
        text = _tidy(template.format(s=adjective, a=adverb))
        if kind == "count" and plural:
            kind = "plural"
        return text, kind

    def _edema(self) -> str:
        return "oedema" if self.british else "edema"

    # -- disc findings ----------------------------------------------------------------

    def _group_sentence(self, phrase: str, kind: str, levels: str, several: bool) -> str:
        verb = "are" if kind == "plural" else "is"
        article = ""
        if kind == "count":
            article = "an " if phrase[:1].lower() in "aeiou" or phrase.startswith("HIZ") else "a "
        form = int(self.rng.integers(7))
        if form == 0:
            return f"{_capitalised(phrase)} at {levels}."
        if form == 1:
            return f"{_capitalised(phrase)} {levels}."
        if form == 2:
            return f"{levels}: {phrase}."
        if form == 3:
            return f"There {verb} {article}{phrase} at {levels}."
        if form == 4:
            return f"At {levels} there {verb} {article}{phrase}."
        if form == 5:
            seen = self._pick(("seen", "noted", "present", "demonstrated"))
            return f"{_capitalised(article + phrase)} {verb} {seen} at {levels}."
        return f"{_capitalised(phrase)} at the {levels} level{'s' if several else ''}."

    def _disc_sentences(self, groups: dict[tuple[str, str], list[str]]) -> list[_Sentence]:
        """Sentences for one region's disc findings, by condition (with ranges) or disc by disc."""
        if not groups:
            return []
        if self._chance(0.35):
            return self._by_level_sentences(groups)
        items = list(groups.items())
        if self._chance(0.3):
            items = [items[i] for i in self.rng.permutation(len(items))]
        else:
            items.sort(key=lambda item: (_POSITION[item[1][0]], _CONDITION_ORDER[item[0][0]]))
        severities_of: dict[str, list[str]] = {}
        for (condition, severity), _ in items:
            severities_of.setdefault(condition, []).append(severity)
        merged: dict[str, bool] = {}
        sentences: list[_Sentence] = []
        for (condition, severity), levels in items:
            if condition not in merged:
                merged[condition] = len(severities_of[condition]) > 1 and self._chance(0.35)
                if merged[condition]:
                    sentences.append(_Sentence(self._merged_sentence(condition, groups)))
            if merged[condition]:
                continue
            phrase, kind = self._disc_phrase(condition, severity, plural=len(levels) > 1)
            sentences.append(_Sentence(
                self._group_sentence(phrase, kind, self._levels_text(levels), several=len(levels) > 1)
            ))
        return sentences

    def _merged_sentence(self, condition: str, groups: dict[tuple[str, str], list[str]]) -> str:
        """One sentence for a condition at several severities: "Disc bulges: mild at ...; moderate at ..."."""
        parts = [
            f"{self._adjective(condition, severity)} at {self._levels_text(levels)}"
            for (group_condition, severity), levels in sorted(
                groups.items(), key=lambda item: SEVERITY_ORDINAL[item[0][1]]
            )
            if group_condition == condition
        ]
        return f"{_capitalised(self._pick(_DISC_LABELS[condition]))}: {'; '.join(parts)}."

    def _by_level_sentences(self, groups: dict[tuple[str, str], list[str]]) -> list[_Sentence]:
        per_disc: dict[str, list[tuple[str, str]]] = {}
        for (condition, severity), levels in groups.items():
            for level in levels:
                per_disc.setdefault(level, []).append((condition, severity))
        sentences = []
        for level in sorted(per_disc, key=_POSITION.__getitem__):
            pairs = sorted(per_disc[level], key=lambda pair: _CONDITION_ORDER[pair[0]])
            if self._chance(0.3):
                pairs = [pairs[i] for i in self.rng.permutation(len(pairs))]
            phrases = _join([self._disc_phrase(c, s, plural=False)[0] for c, s in pairs])
            disc = self._disc(level)
            form = self._pick(("colon", "colon", "at", "level", "dash"))
            if form == "colon":
                sentences.append(_Sentence(f"{disc}: {phrases}."))
            elif form == "at":
                sentences.append(_Sentence(f"At {disc}, {phrases}."))
            elif form == "dash":
                sentences.append(_Sentence(f"{disc} - {phrases}."))
            else:
                sentences.append(_Sentence(f"{disc} level: {phrases}."))
        if self._chance(0.5):
            sentences = self._with_normal_discs(sentences, sorted(per_disc, key=_POSITION.__getitem__))
        return sentences

    def _with_normal_discs(self, sentences: list[_Sentence], levels: list[str]) -> list[_Sentence]:
        """Level by level, the region's discs without findings listed as normal, runs as ranges.

        Only the cervical and lumbar spine, whose discs a level-by-level report walks
        through; a run of normal discs is "L1/2 through L3/4: ...".
        """
        region = region_of(levels[0])
        if region == "thoracic":
            return sentences
        discs = [lv for lv in self.levels_present if region_of(lv) == region]
        by_level = dict(zip(levels, sentences))
        runs: list[list[str]] = []
        for level in discs:
            if level in by_level:
                continue
            if runs and discs.index(runs[-1][-1]) + 1 == discs.index(level):
                runs[-1].append(level)
            else:
                runs.append([level])
        statements = ("normal.", "Normal.", "Unremarkable.", "No disc herniation or stenosis.",
                      "Normal disc height and signal.")
        for run in runs:
            heading = self._disc(run[0]) if len(run) == 1 else f"{self._disc(run[0])} through {self._disc(run[-1])}"
            by_level[run[0]] = _Sentence(f"{heading}: {self._pick(statements)}", neutral=True, negation=True)
        return [by_level[level] for level in sorted(by_level, key=_POSITION.__getitem__)]

    # -- other findings ---------------------------------------------------------------

    def _finding_sentence(self, level: str, condition: str, severity: str) -> str:
        """One sentence for a finding that is not a disc finding, or a disc-keyed one without a level."""
        s = self._adjective(condition, severity)
        v = self._vertebra(level) if level else ""
        at = f" at the level of {v}" if v else ""
        if condition == "fracture":
            return self._fracture(v, severity)
        if condition == "spondylolisthesis":
            return self._listhesis(level, severity)
        if condition == "scoliosis":
            direction = self._pick(("dextroconvex", "levoconvex", "dextroconvex", "levoconvex", ""))
            if not v:
                return _capitalised(_tidy(f"{s} {direction} scoliosis")) + "."
            region = region_of(level)
            centred = "centred" if self.british else "centered"
            return _capitalised(_tidy(self._pick((
                f"{s} {direction} {region} scoliosis with apex at {v}",
                f"{s} scoliosis, apex {v}",
                f"{s} {direction} scoliosis {centred} at {v}",
                f"{s} {direction} scoliosis with the apex at {v}",
            )))) + "."
        if condition == "kyphosis_or_lordosis":
            if v:
                return _capitalised(_tidy(self._pick((
                    f"{s} focal kyphosis at {v}", f"{s} kyphotic angulation at {v}",
                )))) + "."
            return _capitalised(_tidy(self._pick((
                f"{s} accentuated thoracic kyphosis",
                f"{s} exaggerated thoracic kyphosis",
                f"{s} thoracic hyperkyphosis",
                f"{s} straightening of the cervical lordosis",
                f"{s} loss of the normal cervical lordosis",
                f"{s} reversal of the cervical lordosis",
                f"{s} increased lumbar lordosis",
                f"{s} flattening of the lumbar lordosis",
                f"{s} kyphosis",
            )))) + "."
        if condition == "transitional_vertebra":
            return self._transitional(level, s)
        if condition == "bone_lesion":
            if not v:
                return _capitalised(_tidy(f"{s} focal bone lesion")) + "."
            return _capitalised(_tidy(self._pick((
                f"{s} focal bone lesion in the {v} vertebral body",
                f"{s} osseous lesion in the vertebral body of {v}",
                f"{s} T2 hyperintense marrow lesion in the {v} vertebral body",
                f"{s} well-defined bone lesion within the {v} vertebral body",
            )))) + "."
        if condition == "cord_abnormality":
            return _capitalised(_tidy(self._pick((
                f"{s} T2 hyperintense signal within the spinal cord{at}",
                f"{s} intramedullary T2 signal abnormality{at}",
                f"{s} cord signal abnormality{at}",
                f"{s} focal myelopathic cord signal change{at}",
            )))) + "."
        if condition == "soft_tissue_edema":
            where = "prevertebral" if level and region_of(level) == "cervical" else "paraspinal"
            return _capitalised(_tidy(self._pick((
                f"{s} {where} soft tissue {self._edema()}{at}",
                f"{s} paravertebral soft tissue {self._edema()}{at}",
                f"{s} {self._edema()} in the {where} soft tissues{at}",
            )))) + "."
        if condition == "congenital_canal_narrowing":
            return _capitalised(_tidy(self._pick((
                f"{s} congenitally narrow spinal canal{at}",
                f"{s} developmentally narrow spinal canal{at}",
                f"{s} congenital narrowing of the spinal canal{at}",
            )))) + "."
        if condition == "tarlov_cyst":
            if v:
                return _capitalised(_tidy(f"{s} Tarlov cyst{at}")) + "."
            return _capitalised(_tidy(self._pick((
                f"{s} Tarlov cyst at S2",
                f"{s} sacral perineural (Tarlov) cyst",
                f"{s} Tarlov cyst in the sacral canal",
                f"incidental {s} Tarlov cyst at S2",
            )))) + "."
        # Disc-keyed findings (stenosis, or a degenerative one) written without a level.
        phrase, _ = self._disc_phrase(condition, severity, plural=False)
        return _capitalised(phrase) + "."

    def _fracture(self, v: str, severity: str) -> str:
        where = v or "a thoracolumbar vertebra"
        if severity == "present":
            return self._pick((
                f"Fracture of the {where} vertebral body." if v else "Vertebral body fracture.",
                f"Compression fracture of {where}.",
            ))
        grade = _GRADES[severity][0]
        return self._pick((
            f"{_capitalised(severity)} compression fracture of {where} (Genant grade {grade}).",
            f"{_capitalised(severity)} wedge compression fracture of the {where} vertebral body.",
            f"Genant grade {grade} compression fracture of {where}.",
            f"Compression fracture of {where}, Genant grade {grade} ({severity}).",
            f"{_capitalised(severity)} {v} compression fracture." if v
            else f"{_capitalised(severity)} compression fracture.",
        ))

    def _listhesis(self, level: str, severity: str) -> str:
        if not level:
            grade = f"grade {_GRADES[severity][0]} " if severity in _GRADES else ""
            return _capitalised(f"{grade}spondylolisthesis.")
        upper, lower = self._vertebra(level), self._vertebra(vertebra_below(level, self.levels_present))
        if severity in _GRADES:
            arabic, roman = _GRADES[severity]
            grade = self._pick(
                (f"grade {arabic}", f"grade {roman}", severity, f"{severity} (grade {arabic})")
            )
        else:
            grade = ""
        slip = "retrolisthesis" if self._chance(0.1) else "anterolisthesis"
        return _capitalised(_tidy(self._pick((
            f"{grade} {slip} of {upper} on {lower}",
            f"{grade} degenerative spondylolisthesis of {upper} on {lower}",
            f"{upper} {slip} on {lower}" + (f", {grade}" if grade else ""),
            f"spondylolisthesis of {upper} on {lower}" + (f" ({grade})" if grade else ""),
        )))) + "."

    def _transitional(self, level: str, s: str) -> str:
        if level in ("L6", "L7"):
            count = "six" if level == "L6" else "seven"
            return _capitalised(_tidy(self._pick((
                f"{s} lumbosacral transitional vertebra ({count} lumbar-type vertebrae), labelled {level}",
                f"there are {count} lumbar-type vertebrae; the lowest, {level}, "
                f"is a {s} lumbosacral transitional vertebra",
                f"{s} transitional lumbosacral anatomy with a supernumerary {level} vertebra",
            )))) + "."
        if level == "T13":
            v = self._vertebra(level)
            return _capitalised(_tidy(self._pick((
                f"thirteen rib-bearing vertebrae; "
                f"the supernumerary {s} transitional vertebra is labelled {v}",
                f"{s} thoracolumbar transitional vertebra ({v})",
                f"there are 13 thoracic-type vertebrae ({s} transitional vertebra {v})",
            )))) + "."
        if level:
            return _capitalised(_tidy(f"{s} transitional vertebra at {self._vertebra(level)}")) + "."
        return _capitalised(_tidy(f"{s} lumbosacral transitional vertebra")) + "."

    # -- negations and normal statements ----------------------------------------------

    def _negations(self) -> list[tuple[str, str]]:
        """Neutral statements about absent conditions, each with where it may go (region or "other")."""

        def absent(*conditions: str) -> bool:
            return not any(condition in self.present for condition in conditions)

        calibre = "calibre" if self.british else "caliber"
        visualised = "visualised" if self.british else "visualized"
        candidates: list[tuple[str, tuple[str, ...]]] = []
        if absent("fracture"):
            candidates.append((self._pick((
                "No fracture.", "No vertebral fracture.", "No compression fracture.",
                "Vertebral body heights are maintained.",
            )), REGIONS + ("other",)))
        if absent("spinal_stenosis", "congenital_canal_narrowing"):
            candidates.append((self._pick((
                "No spinal stenosis.", "No spinal canal stenosis.", "No significant canal stenosis.",
                "The spinal canal is of normal width.",
            )), REGIONS + ("other",)))
        if absent("cord_abnormality"):
            candidates.append((self._pick((
                "No cord signal abnormality.", f"The spinal cord is normal in {calibre} and signal.",
                "Normal cord signal.", f"The {visualised} spinal cord is normal.",
            )), ("cervical", "thoracic", "other")))
        if absent("bone_lesion", "fracture", "endplate_change"):
            candidates.append((self._pick(("Normal marrow signal.", "Bone marrow signal is normal.")),
                               REGIONS + ("other",)))
        elif absent("bone_lesion"):
            candidates.append((self._pick(("No focal bone lesion.", "No suspicious osseous lesion.")),
                               REGIONS + ("other",)))
        if absent("soft_tissue_edema"):
            candidates.append((self._pick((
                "Paravertebral soft tissues are unremarkable.", f"No soft tissue {self._edema()}.",
            )), REGIONS + ("other",)))
        if absent("protrusion", "extrusion"):
            candidates.append(("No disc herniation.", ("cervical", "lumbar", "other")))
        elif absent("extrusion"):
            candidates.append(("No disc extrusion.", ("cervical", "lumbar", "other")))
        if absent("endplate_change"):
            candidates.append(("No Modic changes.", ("lumbar", "other")))
        if absent("spondylolisthesis"):
            candidates.append((self._pick((
                "Negative for spondylolisthesis.", "No spondylolisthesis.", "No listhesis.",
            )), ("lumbar", "other")))
        if absent("tarlov_cyst") and self._chance(0.3):
            candidates.append((f"The {visualised} sacrum is unremarkable.", ("lumbar", "other")))
        # Hedges that deny and findings of a prior study since resolved, as real reports have them.
        if absent("bone_lesion"):
            vertebra = self._pick(("T10", "T11", "L1", "L2", "L3", "L4"))
            candidates.append((self._pick((
                f"A small focus of fatty marrow in {self._vertebra(vertebra)} is unlikely to represent metastasis.",
                "No marrow lesion suspicious for metastasis.",
            )), REGIONS + ("other",)))
        if absent("protrusion", "extrusion"):
            candidates.append((self._pick((
                "The previously described disc herniation has resolved.",
                "Interval resolution of the previously seen disc extrusion.",
            )), ("cervical", "lumbar", "other")))
        if absent("endplate_change"):
            candidates.append(("Absent Modic changes.", ("lumbar", "other")))
        if absent("spinal_stenosis", "congenital_canal_narrowing"):
            candidates.append(("No central canal or foraminal stenosis.", ("cervical", "lumbar")))
        candidates.append((self._pick((
            "The conus terminates normally.", "The conus medullaris terminates normally at L1.",
            "The conus medullaris is normal in position.",
        )), ("thoracic", "lumbar", "other")))
        if not candidates:
            return []
        count = int(self.rng.integers(0, min(4, len(candidates)) + 1))
        chosen = sorted(self.rng.choice(len(candidates), size=count, replace=False).tolist())
        return [(candidates[i][0], self._pick(candidates[i][1])) for i in chosen]

    def _alignment(self, listheses: list[str]) -> list[_Sentence]:
        """Numbering and alignment: transitional vertebrae, scoliosis, curvature, listheses placed here."""
        sentences: list[_Sentence] = []
        supernumerary = any(level in ("T13", "L6", "L7") for level in self.levels_present)
        if "transitional_vertebra" not in self.present and not supernumerary and self._chance(0.2):
            sentences.append(_Sentence(self._pick((
                "Normal segmentation with five lumbar-type vertebrae.",
                "Normal numbering of the vertebrae.",
            )), neutral=True))
        for level, condition, severity in self.findings:
            if condition in ("transitional_vertebra", "scoliosis", "kyphosis_or_lordosis"):
                sentences.append(_Sentence(self._finding_sentence(level, condition, severity)))
        sentences.extend(_Sentence(text) for text in listheses)
        curved = {"scoliosis", "kyphosis_or_lordosis", "spondylolisthesis"} & self.present
        if not curved and self._chance(0.6):
            text = self._pick((
                "Alignment is normal.", "Normal alignment.", "Physiological curvature is preserved.",
                "Normal alignment and curvature.", "Alignment is maintained.", "Lordosis is preserved.",
                "Preservation of the normal lumbar lordosis.", "The cervical lordosis is maintained.",
            ))
            # Naming the lordosis, the sentence denies a curvature finding: its cue words keep their spelling.
            sentences.append(_Sentence(text, neutral=True, negation="lordosis" in text.lower()))
        elif curved and "spondylolisthesis" not in self.present and self._chance(0.3):
            sentences.append(_Sentence("Otherwise normal alignment.", neutral=True))
        return sentences

    # -- assembly ---------------------------------------------------------------------

    def write(self) -> str:
        impression = self._chance(0.35)
        move_to_impression = impression and self._chance(0.5)

        groups: dict[str, dict[tuple[str, str], list[str]]] = {region: {} for region in REGIONS}
        regional: dict[str, list[_Sentence]] = {region: [] for region in REGIONS}
        listheses_on_top: list[str] = []
        impression_items: list[str] = []
        top_extra: list[_Sentence] = []
        other: list[_Sentence] = []
        for level, condition, severity in self.findings:
            if condition in ("transitional_vertebra", "scoliosis", "kyphosis_or_lordosis"):
                continue  # written with the alignment
            if level and condition in _DISC_KEYED:
                groups[region_of(level)].setdefault((condition, severity), []).append(level)
                continue
            sentence = self._finding_sentence(level, condition, severity)
            if not level:
                (top_extra if self._chance(0.3) else other).append(_Sentence(sentence))
            elif move_to_impression and condition in ("fracture", "cord_abnormality", "bone_lesion",
                                                      "spondylolisthesis", "soft_tissue_edema"):
                impression_items.append(sentence)
            elif condition == "spondylolisthesis" and self._chance(0.4):
                listheses_on_top.append(sentence)
            else:
                regional[region_of(level)].append(_Sentence(sentence))

        paragraphs: list[_Paragraph] = []
        header = self._header()
        if header:
            paragraphs.append(header)
        top = self._alignment(listheses_on_top) + top_extra
        label = self._pick(("FINDINGS:", "Findings:", "", ""))
        if top:
            paragraphs.append(_Paragraph(label, top))
            label = ""
        elif label:
            paragraphs.append(_Paragraph(label, [], label_on_own_line=True))

        negations = self._negations()
        region_paragraphs = []
        for region in REGIONS:
            sentences = self._disc_sentences(groups[region])
            for sentence in regional[region]:
                sentences.insert(int(self.rng.integers(len(sentences) + 1)), sentence)
            if sentences and groups[region] and self._chance(0.2):
                sentences.append(_Sentence(self._pick((
                    "The remaining discs are normal.", "Other levels are unremarkable.",
                    "Remaining levels are within normal limits.",
                )), neutral=True))
            if not sentences:
                sentences.append(_Sentence(self._pick(_REGION_EMPTY), neutral=True))
            sentences += [_Sentence(text, True, True) for text, where in negations if where == region]
            region_paragraphs.append(_Paragraph(self._region_label(region), sentences))
        if self.header_style == "inline":
            # One running paragraph: "Cervical spine: ... Thoracic spine: ..."
            merged = _Paragraph("", [])
            for paragraph in region_paragraphs:
                merged.sentences.append(_Sentence(f"{paragraph.label}:", neutral=False))
                merged.sentences.extend(paragraph.sentences)
            region_paragraphs = [merged]
        paragraphs += region_paragraphs

        other += [_Sentence(text, True, True) for text, where in negations if where == "other"]
        if other:
            paragraphs.append(_Paragraph(self._pick(("", "", "Other:", "Additionally:")), other))
        if impression:
            paragraphs.append(self._impression(impression_items, groups))

        self._add_typo(paragraphs)
        return self._render(paragraphs)

    def _header(self) -> _Paragraph | None:
        form = int(self.rng.integers(5))
        if form == 0:
            return None
        if form == 1:
            return _Paragraph("", [_Sentence("MRI WHOLE SPINE (SAGITTAL T2)", neutral=True)])
        if form == 2:
            return _Paragraph("", [
                _Sentence("Examination: MRI of the whole spine.", neutral=True),
                _Sentence("Technique: Sagittal T2-weighted images.", neutral=True),
            ])
        if form == 3:
            return _Paragraph("Technique:", [_Sentence(
                "Sagittal T2-weighted images of the cervical, thoracic and lumbar spine.", neutral=True)])
        return _Paragraph("", [
            _Sentence("MRI whole spine, sagittal T2.", neutral=True),
            _Sentence(self._pick(("Comparison: None.", "No prior imaging for comparison.")), neutral=True),
        ])

    def _region_label(self, region: str) -> str:
        name = "dorsal" if region == "thoracic" and self.thoracic == "D" and self._chance(0.5) else region
        if self.header_style == "upper":
            return f"{name.upper()} SPINE"
        if self.header_style == "abbrev":
            return f"{region[0].upper()}-spine"
        if self.header_style == "short":
            return name.capitalize()
        return f"{name.capitalize()} spine"

    def _impression(
        self, items: list[str], groups: dict[str, dict[tuple[str, str], list[str]]]
    ) -> _Paragraph:
        label = self._pick(("IMPRESSION:", "Impression:", "Conclusion:"))
        sentences = [_Sentence(f"{i}. {text}" if len(items) > 1 else text) for i, text in enumerate(items, 1)]
        disc_counts = {region: sum(len(levels) for levels in groups[region].values()) for region in REGIONS}
        if not self.findings:
            sentences.append(_Sentence(self._pick((
                "Normal MRI of the whole spine.", "No significant abnormality.", "Unremarkable study.",
            )), neutral=True))
        elif any(disc_counts.values()):
            worst = max(REGIONS, key=lambda region: disc_counts[region])
            options = [
                f"Degenerative changes as described above, predominantly in the {worst} spine.",
                f"Degenerative disc changes, predominantly {worst}, as described.",
            ]
            discs = {level for region in REGIONS for levels in groups[region].values() for level in levels}
            if len(discs) > 1:
                options.append("Multilevel degenerative changes as detailed above.")
            else:
                options.append("Degenerative changes as described above.")
            sentences.append(_Sentence(self._pick(options), neutral=True))
        else:
            sentences.append(_Sentence("Findings as described above.", neutral=True))
        if len(items) > 1 and sentences[-1].neutral:
            sentences[-1].text = f"{len(items) + 1}. {sentences[-1].text}"
        numbered = len(items) > 1
        return _Paragraph(label, sentences, label_on_own_line=numbered, one_per_line=numbered)

    def _add_typo(self, paragraphs: list[_Paragraph]) -> None:
        """Give about one report in five a single typo, only where no finding is stated."""
        if not self._chance(TYPO_RATE):
            return
        candidates = [
            (sentence, word)
            for paragraph in paragraphs
            for sentence in paragraph.sentences
            if sentence.neutral
            for word in TYPOS
            # "Normal" carries the meaning of "Normal cord signal."; misspelt, the negation is lost.
            if not (sentence.negation and word in _NEGATING_WORDS)
            and re.search(rf"\b{word}\b", sentence.text, flags=re.IGNORECASE)
        ]
        if candidates and self._chance(0.75):
            sentence, word = candidates[int(self.rng.integers(len(candidates)))]
            match = re.search(rf"\b{word}\b", sentence.text, flags=re.IGNORECASE)
            assert match is not None
            typo = TYPOS[word]
            if match.group(0)[0].isupper():
                typo = _capitalised(typo)
            sentence.text = sentence.text[: match.start()] + typo + sentence.text[match.end():]
            return
        # A double space between two sentences: harmless to any reader, common in dictation.
        joins = [p.sentences[i] for p in paragraphs for i in range(len(p.sentences) - 1)]
        if joins:
            joins[int(self.rng.integers(len(joins)))].text += " "

    def _render(self, paragraphs: list[_Paragraph]) -> str:
        blocks = []
        for paragraph in paragraphs:
            joiner = "\n" if paragraph.one_per_line else " "
            body = joiner.join(sentence.text for sentence in paragraph.sentences)
            label = paragraph.label
            if label and not label.endswith(":"):
                label += ":"
            if not label:
                blocks.append(body)
            elif not body:
                blocks.append(label)
            elif paragraph.label_on_own_line or (self.header_style == "upper" and label.endswith("SPINE:")):
                blocks.append(f"{label}\n{body}")
            else:
                blocks.append(f"{label} {body}")
        separator = "\n\n" if self.header_style in ("upper", "title") else "\n"
        return separator.join(blocks) + "\n"
