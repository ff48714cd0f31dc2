"""The report reader: free-text radiology reports to the long-format findings table.

Many sites have no structured findings, only the radiologist's report. This
module turns each report into rows of ``findings.csv`` (see
``shared/docs/DESIGN.md``): one row per (report, level, condition), with the
vocabulary of :mod:`spineage.findings.vocabulary`. It is rule-based,
deterministic and fast (precompiled regular expressions, about a millisecond per
report, and time linear in a report's length: a megabyte pasted as one clause
reads in about two seconds; ``benchmarks/bench_report_reader.py``), and it never
guesses: text it cannot map is kept as an *unmapped* row (``mapped=False``,
``condition=""``) so that it can be counted and read.

Example:
    >>> from spineage.findings.report_reader import read_report
    >>> read_report("Mild disc protrusions C3/4 and C5-7", "sub-01")[["level", "condition", "severity"]].values.tolist()
    [['C3', 'protrusion', 'mild'], ['C5', 'protrusion', 'mild'], ['C6', 'protrusion', 'mild']]

How a report is read:

* **Clauses.** A report is split into lines, sentences (``.``, ``;``, ``!``) and
  comma-separated clauses. A clause holding only levels ("..., C5/6 and C6/7")
  joins its neighbour, as does one that opens with levels after a clause ending
  with levels ("bulges at C3-4, C4-5 and C5-6 indenting the sac"); a negated
  list ("no fracture, listhesis or stenosis") stays one clause. A parenthesis
  that names a finding becomes a clause of its own; any other parenthesis
  ("(C6/7)", "(artifacts?)") stays in its clause. Within a clause, "due to",
  "secondary to", "caused by", "with" and "without" start sub-clauses: "Mild
  spinal cord compression due to C5-7 disc protrusions" gives the compression
  (a stenosis) and the protrusions their own levels and severities. ``source_text`` is the clause the row came from.
* **Levels.** "C5/6", "C5-6", "L4-L5", "L5/S1", "C7/Th1", "L4 on L5" are discs,
  keyed by the vertebra above (C5, C5, L4, L5, C7, L4). "C3-7" is the range of
  vertebrae C3 to C7, i.e. the discs C3/4 ... C6/7 (C3, C4, C5, C6); "C4/5/6" is
  a chain of discs (C4, C5); "L3-4 to L5-S1" is L3, L4, L5. Ranges cross regions
  ("C4-Th1" is C4-C7, "T11-L2" is T11, T12, L1); T13, L6 and L7 appear only when
  the report names them somewhere (then "L5-S1" is L5/6 and L6/S1, and a
  transitional vertebra written without a level is the named one). "L4
  anterolisthesis on L5" is a slip of L4 (L5 is the vertebra slipped over).
  Th, T and D all mean thoracic. For vertebral findings (fracture, bone
  lesion, transitional vertebra, soft-tissue oedema) a level expression means
  the vertebrae themselves, endpoints included ("T11-L2 fractures" is T11, T12,
  L1, L2). "T1"/"T2" followed by a sequence word ("T2 signal", "T2w", "T2
  hyperintensity") is an MRI sequence, not a level; a vertebra naming a nerve
  root ("the traversing L5 nerve root", "S1 radiculopathy") is no level either.
  Typed levels: "L45" is L4/5 (two digits in a row that no vertebra has),
  "L5S1" and "C7T1" are discs, and "C7-T!", "C7-TI", "C4-CS" are C7/T1 and
  C4/5 (a shifted or look-alike digit after a level's hyphen). Levels outside
  the vocabulary (C1, S1-S5) leave a row with level ""; a disc (degenerative)
  finding whose written levels are all outside the spine or the vocabulary
  ("protrusions L9/10 and C1/2 and S1/2") is an unmapped row instead.
* **Which finding a level belongs to.** A level list after a finding belongs to
  it ("disc protrusion C4/5"), one before a finding to the next finding ("C4/5
  disc protrusion", "at the level C6/7 severe cord compression"). A disc
  (degenerative) finding with no level of its own borrows the levels of its
  neighbour ("disc protrusion and kyphosis at C3/4"; "disc bulge with annular
  fissure at L4/5"), else the disc levels of its clause that no finding took
  ("Degenerate L5/6 disc with annular fissure"); a line headed by levels gives
  them to every finding that names none, until a sentence names levels of its
  own: "L4-5: ...", "L4-5 level: ...", "L3-4 - ...", "T12-L1 through L2-L3:
  ...", "L4-L5 and L5-S1: ...", a disc opening the line before a capital
  ("C4-C5 Disc bulge ..."), and a sentence opening "At L4-5, ..." or "At L4-5 there is ..." (not
  "At C4/5 and C5/6 ..."). A heading alone on its line heads the lines below
  it, until a blank line, a label or another heading. Failing a heading, a disc
  finding with no level takes the disc levels of the nearest clause before it in
  its sentence ("The L4-5 extrusion has resorbed, with only a small residual
  protrusion"; a single vertebra, "conus at L1", names no disc). A list
  "Desiccation: mild at C4/5; moderate at C5/6" gives its label's finding to
  every part. Section labels ("Impression:", "C-spine:") are skipped. Pathologies and other findings keep
  level "" when no level is written for them: the cord compression in
  "cord compression due to C4/5 disc protrusion" has level "".
* **Severity.** minimal, slight, mild, small, minor, tiny, subtle, low-grade:
  ``mild``; moderate: ``moderate``; severe, marked, advanced, large,
  significant, pronounced, extensive, high-grade: ``severe``; near/nearly/almost
  complete: ``near_complete`` (desiccation only; ``severe`` elsewhere). A range
  or run ("mild to moderate", "moderately severe") takes the higher grade. A
  severity word qualifies the finding it sits in ("the canal is moderately
  narrowed"), else the next within four words and no conjunction (a pair of
  places does not count: "large central and right paracentral herniation"),
  else the one before.
  "Grade 1/2/3+" (Meyerding, Genant) is mild/moderate/severe for spondylolisthesis
  and fractures only.
  A severity is clamped to what the condition allows (a "large extrusion" is
  ``moderate``, the highest extrusion grade). With no severity word a graded
  degenerative condition is ``mild`` (its mildest grade), endplate changes and
  annular fissures are always ``present``, and pathologies and other findings
  are ``present``.
* **Negation and uncertainty** are scoped to the sub-clause. Cues before a
  finding ("no", "not", "without", "negative for", "free of", "absence of",
  "lack of", "nor", "no longer", "(interval) resolution/resorption of",
  "unlikely to represent", "less likely"; "normal", "preserved", "preservation of",
  "maintained", "absent", "resolved", "intact" for the next three words) reach
  forward until "but", "however", "except", "otherwise" ... or an "and" that
  starts a graded finding ("no stenosis and mild kyphosis"); cues after it
  ("ruled out", "excluded", "not seen", "is normal/preserved/unremarkable", "is
  no longer seen", "has resolved", "has resorbed", "is unlikely") reach back.
  Resolved findings are negated. Uncertainty: "possible", "probable", "questionable",
  "suspected", "suspicious for", "concerning for", "suggestive of", "may
  represent", "likely", "differential", "cannot be excluded", "not ruled out",
  "is questioned/queried/equivocal", "?", and "versus" both ways ("haemangioma
  versus metastasis"). Negated and uncertain findings are still emitted, flagged.
* **Synonyms** (British and American spellings, case-insensitive, typos of one
  letter in words of seven letters or more: "protusion", "desication",
  "compresion", "kyfphosis"): see :data:`CONDITION_PATTERNS`; "spur-disk
  complex" and "bony ridging" are disc-osteophyte complexes, "uncinate
  spurring" and "spurring of the uncovertebral joints" uncovertebral
  osteophytes. Decisions: ``spinal_stenosis`` is the central (spinal canal)
  stenosis; foraminal, subarticular and lateral-recess narrowing is another
  finding, outside the vocabulary (an unmapped term; "central canal and
  foraminal stenosis" is a spinal stenosis and that term). Cord compression,
  flattening or deformity is a ``spinal_stenosis`` (a narrowed canal), not a
  ``cord_abnormality`` (signal change, myelomalacia, syrinx, cord oedema,
  myelopathy). A narrow canal qualified as
  congenital, developmental, constitutional or primary ("primarily narrow
  spinal canal") is ``congenital_canal_narrowing``, and a stenosis described
  as congenital in its clause ("canal stenosis C3-5 (congenital and
  degenerative)") gives both rows; a protrusion qualified as extruded or
  sequestered is an ``extrusion``; bare "oedema" is ``soft_tissue_edema``
  unless it is of the cord, an endplate or the bone marrow.
* **Unmapped rows.** A clause keeps one unmapped row (``mapped=False``,
  ``condition=""``, ``severity=""``) when it names a finding-like term the
  reader cannot map (chondrosis, ligamentum flavum hypertrophy, foraminal
  narrowing, cord inhomogeneities, widening, lesion, cyst, ...) and does not
  deny it ("no foraminal stenosis" leaves no row), or names a level or a severity
  but no finding ("visualised central canal at the level C6"). Its level is the
  one level it names, else "". A clause with neither a term, a level nor a
  severity ("visualised central canal", "T2 flow void artifacts of CSF") is
  dropped, as is a clause that only says a level is normal ("L3/4: normal").
  A non-empty report that yields no row at all keeps one unmapped row holding
  its whole text, so that no report vanishes silently.
* **One row per (report, level, condition).** Repeated mentions merge: the row
  kept is the affirmed one over the negated, the certain over the uncertain,
  then the most severe. A level-less row ("spinal cord compression") is kept
  beside levelled rows of the same condition ("severe cord compression at
  C6/7"). Unmapped rows are never merged.
"""

from __future__ import annotations

import bisect
import functools
import io
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from spineage.atomic import write_atomic
from spineage.errors import UserError
from spineage.findings.vocabulary import (
    DEGENERATIVE_SEVERITIES,
    LEVELS,
    PATHOLOGY_SEVERITIES,
    SEVERITY_ORDINAL,
)

FINDINGS_COLUMNS: tuple[str, ...] = (
    "series_id",
    "level",
    "condition",
    "severity",
    "negated",
    "uncertain",
    "source_text",
    "mapped",
)
"""The columns of the findings table, in order."""

EMPTY_NOTES: frozenset[str] = frozenset({"", "n/a", "na", "nan", "none", "null", "-", "--"})
"""Report texts that mean "no report" (compared stripped and lower-cased)."""

# ---------------------------------------------------------------------------
# Vocabulary of the text: conditions, unmapped terms, severities, cues
# ---------------------------------------------------------------------------

_DISC = r"(?:intervertebral\s+)?dis[ck]"
_OEDEMA = r"o?edema(?:tous)?"
# Words that may qualify a central (spinal canal) stenosis. Foraminal, subarticular and
# lateral-recess narrowing is another finding (_FORAMEN), outside the vocabulary.
_STENOSIS_PLACE = r"(?:spinal|central|canal|thecal|sac|cervical|thoracic|lumbar|acquired|degenerative|multi-?level)"
_SIDE = r"(?:left|right|bilateral(?:ly)?|both|\w+-sided|(?:left|right)\s+(?:greater|more|worse)\s+than\s+(?:left|right))"
_FORAMEN = (
    r"(?:(?:neural|neuro-?|exit(?:ing)?|intervertebral|nerve\s+root)\s*)?(?:foramin\w*|foramen|neuroforamin\w*)"
    r"|(?:lateral|subarticular)(?:\s+(?:recess(?:es)?|zones?|gutters?))?|recess(?:es)?"
)
_NARROWING = r"(?:stenos[ie]s|stenotic|narrow\w*|compromis\w*|encroach\w*|impinge\w*|effacement)"
_UNCO = r"(?:uncovertebral|unco-?vertebral|uncinate)"

CONDITION_PATTERNS: dict[str, tuple[str, ...]] = {
    "extrusion": (
        rf"(?:{_DISC}\s+)?extru(?:sion|sions|ded|ding)",
        r"sequest(?:ered|ration|rum)",
        r"(?:migrated|free)\s+(?:dis[ck]\s+)?fragments?",
    ),
    "protrusion": (
        rf"(?:{_DISC}[\s-]+)?(?:protru\w*|herniat\w*|hernia(?:s|e)?|prolaps\w*)",
        r"\bhnp\b",
    ),
    "disc_bulge": (rf"(?:{_DISC}\s+|annular\s+)?bulg(?:e|es|ing|ed)",),
    "disc_osteophyte_complex": (
        rf"{_DISC}[\s/-]*(?:and\s+)?osteophyt\w*(?:\s+(?:complex(?:es)?|ridg\w*|bars?))?",
        rf"{_DISC}[\s/-]+(?:bar|spur)s?(?:\s+complex(?:es)?)?",
        rf"(?:spur|osteophyte)[\s/-]+(?:and\s+)?{_DISC}s?(?:\s+(?:complex(?:es)?|bars?|ridg\w*))",
        r"\bdocs?\b",
        r"(?:osteophytic|spondylotic|bony|ossific|spondylitic)\s+ridg\w*",
    ),
    "uncovertebral_osteophyte": (
        rf"(?:hypertrophic\s+)?{_UNCO}(?:\s+(?:and|/|&)\s+facet)?(?:\s+(?:joints?|process(?:es)?))?"
        r"(?:\s+(?:osteophyt\w*|hypertroph\w*|arthros[ie]s|arthropath\w*|osteoarthrit\w*|arthrit\w*|spur\w*"
        r"|degenerat\w*|disease|ridg\w*|productive\s+changes?|changes?))?",
        r"(?:osteophyt\w*|spur\w*|hypertroph\w*|arthropath\w*|arthros[ie]s|degenerat\w*)\s+(?:arising\s+)?"
        rf"(?:of|at|from|involving|in|along)\s+(?:the\s+)?(?:{_SIDE}\s+)?{_UNCO}(?:\s+(?:joints?|process(?:es)?))?",
    ),
    "desiccation": (
        r"des+ic+at\w*",
        r"dehydrat\w*",
        rf"(?:loss|reduction|diminution|decrease)\s+(?:of|in)\s+(?:the\s+)?(?:normal\s+)?(?:t2\s+)?{_DISC}\s+"
        r"(?:height\s+and\s+)?(?:t2\s+)?(?:signal|hydration)",
        r"(?:loss\s+of|reduced|decreased|diminished|low|lower|reduction\s+(?:of|in)|decrease\s+in)\s+(?:the\s+)?"
        r"(?:normal\s+)?(?:t2\s+)?(?:signal(?:\s+intensity)?|hydration|water\s+content)"
        r"(?=\s+(?:of|in|within|at)\s+(?:the\s+)?(?:\S+\s+){0,4}?(?:intervertebral\s+)?dis[ck])",
        rf"{_DISC}s?\s+(?:height\s+and\s+)?(?:t2\s+)?signal\s+loss",
        rf"(?:reduced|decreased|diminished|low)\s+(?:t2\s+)?{_DISC}\s+signal",
        r"(?:black|dark)\s+dis[ck]s?",
        r"(?:t2\s+)?hypointens\w*\s+dis[ck]s?",
    ),
    "endplate_change": (
        r"modic(?:\s+type)?(?:\s*(?:[123]|i{1,3})\b(?:\s*(?:/|and|-)\s*(?:[123]|i{1,3})\b)?)?(?:\s+(?:end[\s-]?plate\s+)?(?:changes?|degenerat\w*))?",
        rf"end[\s-]?plates?\s+(?:signal\s+)?(?:changes?|{_OEDEMA}|degenerat\w*|marrow\s+changes?|irregularit\w*|sclerosis)",
        r"type\s+(?:[123]|i{1,3})\s+(?:end[\s-]?plate|modic)\s+changes?",
    ),
    "annular_fissure": (
        r"an+ul(?:ar|us)\s+(?:fibros[ui]s\s+)?(?:\w+\s+)?(?:fissur\w*|tears?|rents?)",
        r"(?:fissur\w*|tears?|rents?|disruption)\s+(?:of|in|within|involving)\s+(?:the\s+)?(?:\w+\s+)?an+ul(?:ar|us)"
        r"(?:\s+fibros[ui]s)?",
        r"torn\s+an+ulus",
        r"high[\s-]intensity\s+zones?",
        r"\bhizs?\b",
    ),
    "spondylolisthesis": (
        r"\w*listhes[ie]s",
        r"\w*listhetic",
        r"(?:anterior|posterior)\s+(?:vertebral\s+)?slip(?:page)?",
    ),
    "congenital_canal_narrowing": (
        r"(?:congenital(?:ly)?|developmental(?:ly)?|constitutional(?:ly)?|primar(?:y|ily))\s+"
        r"(?:(?:small|narrow(?:ed)?)\s+)?(?:(?:spinal|central|bony|cervical|lumbar|thoracic)\s+){0,4}"
        r"(?:canal\s+)?(?:narrow\w*|stenos[ie]s|stenotic|small|canal)",
        r"short\s+pedicles?",
    ),
    "spinal_stenosis": (
        # "central canal and foraminal stenosis": the central part; the foraminal part is another term.
        rf"(?:{_STENOSIS_PLACE}\s+){{0,3}}(?:central|spinal|canal)(?:\s+canal)?"
        rf"(?=\s+(?:and|or|/|&)\s+(?:\w+\s+){{0,3}}?(?:{_FORAMEN})\s+{_NARROWING})",
        rf"(?:{_STENOSIS_PLACE}\s+){{0,4}}stenos[ie]s",
        r"stenotic(?!\s+(?:neural\s+)?(?:foram\w*|recess\w*|lateral))",
        rf"(?:{_STENOSIS_PLACE}\s+){{0,4}}canal\s+(?:narrowing|compromise|encroachment)",
        rf"narrow(?:ing|ed|s)?\s+(?:of\s+)?(?:the\s+)?(?:{_STENOSIS_PLACE}\s+){{0,3}}canal",
        r"canal\s+(?:is\s+|was\s+)?(?:\w+ly\s+)?narrowed",
        # Cord compression is a stenosis (a narrowed canal), not a cord abnormality (signal change).
        rf"(?:spinal\s+)?cord\s+(?:compressions?|impingement|deformit\w*|flattening|effacement|indentation)",
        r"(?:spinal\s+)?cord\s+(?:is\s+|was\s+)?(?:not\s+)?(?:compressed|impinged|flattened|deformed)",
        r"(?:compression|flattening|impingement|deformit\w*|effacement|indentation|mass\s+effect)\s+(?:of|on|upon)\s+"
        r"the\s+(?:\w+\s+)?(?:spinal\s+)?cord",
        r"(?:compress\w*|flatten\w*|deform\w*)\s+the\s+(?:\w+\s+)?(?:spinal\s+)?cord",
    ),
    "cord_abnormality": (
        r"(?:myelopath\w*\s+)?(?:spinal\s+)?cord\s+"
        rf"(?:(?:t2\s+)?(?:signal\s+)?(?:changes?|abnormalit\w*|alterations?|hyperintens\w*)|{_OEDEMA}|lesions?|contusion|atrophy|myelomalacia)",
        r"(?:abnormal|increased|high)\s+(?:t2\s+)?(?:cord|intramedullary)\s+signal",
        r"cord\s+signal\s+(?:is\s+)?abnormal",
        r"myelopath\w*",
        r"myelomalaci\w*",
        r"syrinx|syringo\w*|hydromyeli\w*",
        r"intramedullary\s+(?:t2\s+)?(?:signal\s+(?:changes?|abnormalit\w*)|lesions?|hyperintens\w*)",
        r"(?:t2\s+)?(?:hyperintens\w*|abnormal|increased|high)\s+(?:t2\s+)?signal(?:\s+intensity)?\s+(?:with)?in\s+the\s+"
        r"(?:\w+\s+)?(?:spinal\s+)?cord",
    ),
    "fracture": (
        r"(?:(?:compression|burst|wedge|insufficiency|osteoporotic|pathologic(?:al)?|vertebral)\s+){0,4}fractur\w*",
        r"(?:wedge|wedging|compression)\s+(?:compression\s+)?deformit\w*",
        r"vertebral\s+(?:body\s+)?(?:height\s+loss|collapse)",
        r"loss\s+of\s+(?:the\s+)?vertebral\s+(?:body\s+)?height",
        r"(?:height\s+loss|loss\s+of\s+height)(?=\s+(?:of|in|at)\s+(?:the\s+)?(?:\S+\s+)?vertebral\s+body)",
        r"(?:(?<=\d\s)|(?<=\d\d\s))(?:height\s+loss|collapse)",
    ),
    "bone_lesion": (
        r"(?:bone|osseous|bony|marrow|vertebral(?:\s+body)?)\s+(?:lesions?|tumou?rs?|mass(?:es)?|metasta\w*)",
        r"ha?emangiom\w*",
        r"metasta\w*",
        r"(?:lytic|sclerotic|blastic|osteolytic|osteoblastic|osteosclerotic|destructive|expansile)\s+(?:\w+\s+)?lesions?",
        r"enostos[ie]s|bone\s+islands?|myeloma|plasmacytoma",
    ),
    "soft_tissue_edema": (
        r"(?:prevertebral|paravertebral|paraspinal|paraspinous|soft[\s-]tissues?|interspinous|ligamentous|retropharyngeal)\s+"
        rf"(?:soft[\s-]tissues?\s+)?(?:{_OEDEMA}|swelling|fluid)",
        rf"{_OEDEMA}",
    ),
    "scoliosis": (r"\w*scolio\w*",),
    "kyphosis_or_lordosis": (
        r"\w*kyph\w*",
        r"(?:loss|reversal|straightening|flattening|accentuation|exaggeration|increase|decrease|reduction)\s+of\s+"
        r"(?:the\s+)?(?:normal\s+|physiological\s+|cervical\s+|lumbar\s+)*lordo\w*",
        r"\w*lordo\w*",
        r"straighten\w*\s+of\s+the\s+(?:cervical\s+|lumbar\s+)?spine",
    ),
    "transitional_vertebra": (
        r"(?:lumbosacral\s+)?transitional\s+(?:lumbosacral\s+)?(?:vertebra\w*|anatomy|segments?|vertebral\s+bod\w*)",
        r"\w*sacrali[sz]\w*",
        r"lumbari[sz]\w*",
        r"(?:six|6|four|4)\s+lumbar(?:[\s-]type)?\s+vertebra\w*",
    ),
    "tarlov_cyst": (
        r"tarlov\w*(?:\s+cysts?)?",
        r"perineural\s+(?:root\s+)?(?:sleeve\s+)?cysts?",
        r"(?:nerve\s+)?root\s+sleeve\s+cysts?",
    ),
}
"""Regular expressions (on lower-cased, typo-corrected text) for each condition."""

UNMAPPED_TERM_PATTERNS: tuple[str, ...] = (
    # Foraminal, subarticular and lateral-recess narrowing: not a central (spinal canal) stenosis.
    rf"(?:{_SIDE}\s+){{0,3}}(?:{_FORAMEN})\s+{_NARROWING}"
    rf"|(?:stenos[ie]s|narrow\w*|compromis\w*|encroach\w*)\s+(?:of\s+|in\s+)?(?:the\s+)?(?:{_SIDE}\s+){{0,3}}(?:{_FORAMEN})"
    rf"|(?:{_SIDE}\s+){{0,3}}(?:{_FORAMEN})(?=\s+(?:and|or|/|&)\s+(?:\w+\s+){{0,3}}?(?:central|spinal|canal)\b)"
    rf"|(?:{_FORAMEN})\s+(?:is|are)\s+(?:\w+\s+)?(?:narrowed|stenotic)",
    rf"(?:bone\s+)?marrow\s+{_OEDEMA}",
    rf"{_OEDEMA}\s+(?:of|in|within)\s+(?:the\s+)?(?:\w+\s+)?(?:vertebral\s+body|vertebra|bone|marrow)",
    r"(?:osteo)?chondros[ie]s",
    r"spondylolys[ie]s|pars\s+(?:interarticularis\s+)?defects?|spondylos[ie]s|spondylarthros\w*|spondylarthrit\w*|spondylit\w*|discit\w*",
    r"(?:facet|zygapophys\w*)\s+(?:joints?\s+)?(?:arthropath\w*|arthros[ie]s|hypertroph\w*|degenerat\w*|effusions?)",
    r"ligament\w*\s+flav\w*(?:\s+(?:hypertroph\w*|thicken\w*))?",
    rf"(?:{_DISC}\s+)?(?:height\s+loss|space\s+narrowing)|loss\s+of\s+(?:the\s+)?(?:{_DISC}\s+)?height|{_DISC}\s+(?:degenerat\w*|disease)",
    r"degenerative\s+(?:changes?|dis[ck]\s+disease)",
    r"osteophyt\w*|spurs?|spurring|schmorl\w*|syndesmophyt\w*|ossification|\bopll\b|\bdish\b",
    r"lesions?|cysts?|cystic|mass(?:es)?|tumou?rs?",
    r"hyperintens\w*|hypointens\w*|inhomogen\w*",
    r"widening|narrowing|effacement|impression|indentation|thickening|hypertroph\w*|arthropath\w*|arthros[ie]s",
    r"abnormalit\w*|atrophy|effusions?|collapse|instability|malalignment|sclerosis",
)
"""Finding-like terms the vocabulary has no class for: kept as unmapped rows."""

_SEVERITY_WORDS: dict[str, tuple[str, ...]] = {
    "near_complete": (r"(?:near(?:ly)?|almost)[\s-]+(?:complete|total)(?:ly)?", r"subtotal"),
    "mild": (
        r"minimal(?:ly)?",
        r"slight(?:ly)?",
        r"mild(?:ly)?",
        r"small",
        r"minor",
        r"tiny",
        r"subtle",
        r"low[\s-]grade",
    ),
    "moderate": (r"moderate(?:ly)?",),
    "severe": (
        r"severe(?:ly)?",
        r"marked(?:ly)?",
        r"advanced",
        r"large",
        r"significant(?:ly)?",
        r"pronounced",
        r"extensive",
        r"considerable",
        r"high[\s-]grade",
    ),
}
_GRADE_VALUES = {"1": 1, "i": 1, "2": 2, "ii": 2, "3": 3, "iii": 3, "4": 3, "iv": 3, "5": 3, "v": 3}

_NEG_PRE = (
    r"\b(?:no|not|without|negative\s+for|free\s+of|absence\s+of|lack\s+of|nor|neither|no\s+longer"
    r"|(?:interval\s+)?(?:resolution|resorption)\s+of"
    r"|(?:(?:is|are|was|were)\s+)?(?:considered\s+|felt\s+|thought\s+)?unlikely\s+to\s+(?:represent|be|reflect)|(?:less|not)\s+likely|doubtful\s+for)\b"
)
# Words that deny only what follows closely ("normal cervical lordosis", "preservation of the
# lumbar lordosis", "absent Modic changes"): at most three words on.
_NEG_NORMAL = r"\b(?:normal|preserv(?:ed|ation\s+of)|maint(?:ained|enance\s+of)|absent|resolved|intact)\b"
_NEG_POST = (
    r"\b(?:(?:has\s+been\s+|have\s+been\s+|is\s+|are\s+|was\s+|were\s+)?(?:ruled\s+out|excluded)"
    r"|not\s+(?:seen|identified|demonstrated|evident|visuali[sz]ed|present|detected|appreciated)"
    r"|(?:is|are|was|were|appears?|remains?)\s+(?:otherwise\s+)?(?:normal|absent|preserved|maintained|intact|unremarkable)"
    r"|unremarkable|within\s+normal\s+limits"
    r"|no\s+longer\s+(?:seen|visible|present|evident|identified|demonstrated|apparent|noted|appreciated|visuali[sz]ed)"
    r"|(?:has|have|had|is|are|was|were)\s+(?:since\s+|now\s+|completely\s+|largely\s+)?(?:resolved|resorbed)|resolved"
    r"|(?:is|are|was|were)\s+(?:considered\s+|felt\s+|thought\s+|deemed\s+)?(?:to\s+be\s+)?(?:unlikely|less\s+likely|doubtful)"
    r"|unlikely|doubtful)\b"
)
_UNC_PRE = (
    r"\b(?:possibl[ey]|probabl[ey]|questionabl[ey]|suspect(?:ed)?|suspicious\s+(?:for|of)|suspicion\s+(?:of|for)"
    r"|may\s+(?:represent|reflect|be)|might\s+(?:represent|be)|could\s+(?:represent|be)|likely|presumed|presumably"
    r"|equivocal|query|(?:cannot|can\s*not|can't)\s+exclude|concerning\s+for|worrisome\s+for|suggestive\s+of"
    r"|differential(?:\s+diagnosis)?(?:\s+(?:includes?|considerations?))?|indeterminate)\b"
)
# "haemangioma versus metastasis": both sides are uncertain.
_UNC_BOTH = r"\b(?:versus|vs)\b"
_UNC_POST = (
    r"\b(?:(?:cannot|can\s*not|could\s+not|can't)\s+be\s+(?:excluded|ruled\s+out)"
    r"|(?:is\s+|are\s+)?not\s+(?:be\s+)?(?:excluded|ruled\s+out)"
    # (not "is uncertain/indeterminate": "the age of the fracture is indeterminate" affirms the fracture)
    r"|(?:is|are|was|were)\s+(?:suspected|questioned|queried|questionable|possible|likely|probable|equivocal))\b"
)
_TERMINATORS = (
    r"\b(?:but|however|although|though|except|apart\s+from|aside\s+from|other\s+than|whereas|while|otherwise)\b"
)
_SPLITTERS = (
    r"\b(?:due\s+to|secondary\s+to|caused\s+by|causing|resulting\s+in|associated\s+with|with(?!\s+(?:the\s+|its\s+)?apex\b)|without)\b"
)
_FILLER = (
    r"(?:\s|,|&|/|\band\b|\bor\b|\bat\b|\bthe\b|\blevels?\b|\bof\b|\bin\b|\bon\b|\bfrom\b|\bplus\b|\bas\s+well\s+as\b|\bspaces?\b|\bapex\b|\blabell?ed\b|\blowest\b)*"
)

# Words a typo may stand for: the full words behind the patterns above.
_KEYWORD_WORDS: tuple[str, ...] = (
    "protrusion protrusions protruding herniation herniations herniated prolapse prolapsed extrusion extrusions "
    "extruded sequestered sequestration desiccation desiccated dehydration dehydrated stenosis stenoses stenotic "
    "compression compressions compressed spondylolisthesis anterolisthesis retrolisthesis listhesis kyphosis "
    "kyphotic hyperkyphosis scoliosis scoliotic lordosis lordotic hyperlordosis fracture fractures fractured "
    "osteophyte osteophytes osteophytic uncovertebral haemangioma hemangioma haemangiomas hemangiomas metastasis "
    "metastases metastatic myelopathy myelomalacia syringomyelia hydromyelia transitional sacralisation "
    "sacralization lumbarisation lumbarization perineural fissure fissures endplate endplates bulging "
    "hernias congenital congenitally developmental developmentally narrowing chondrosis osteochondrosis spondylosis "
    "hypertrophy degeneration degenerative inhomogeneities inhomogeneity hyperintensity hyperintense "
    "paravertebral prevertebral paraspinal annular deformity deformities straightening uncinate foraminal "
    "preserved preservation maintained resolved resolution unlikely"
).split()
_KEYWORD_SET = frozenset(_KEYWORD_WORDS)
_KEYWORDS_BY_LENGTH: dict[int, tuple[str, ...]] = {
    n: tuple(w for w in _KEYWORD_WORDS if len(w) == n) for n in {len(w) for w in _KEYWORD_WORDS}
}
_MIN_TYPO_LENGTH = 7

# ---------------------------------------------------------------------------
# Compiled patterns
# ---------------------------------------------------------------------------

# One scan finds every keyword: at a given position the first alternative that
# matches wins, so the unmapped terms that refine a mapped keyword ("bone marrow
# oedema" before "oedema") come first and the generic unmapped terms last.
_UNMAPPED_OVERRIDES = 3  # the first UNMAPPED_TERM_PATTERNS, which beat mapped keywords
_KEYWORD_GROUPS: tuple[tuple[str, str | None, str], ...] = (
    tuple((f"unmapped{i}", None, p) for i, p in enumerate(UNMAPPED_TERM_PATTERNS[:_UNMAPPED_OVERRIDES]))
    + tuple((condition, condition, "|".join(patterns)) for condition, patterns in CONDITION_PATTERNS.items())
    + (("unmapped", None, "|".join(UNMAPPED_TERM_PATTERNS[_UNMAPPED_OVERRIDES:])),)
)
_CONDITION_OF_GROUP: dict[str, str | None] = {name: condition for name, condition, _ in _KEYWORD_GROUPS}
_KEYWORD_RE = re.compile(
    r"(?<![\w-])(?:" + "|".join(f"(?P<{name}>{pattern})" for name, _, pattern in _KEYWORD_GROUPS) + r")(?![\w])"
)
_SEVERITY_RE = re.compile(
    r"(?<![\w])(?:"
    + "|".join(
        f"(?P<{name}>{'|'.join(words)})" for name, words in _SEVERITY_WORDS.items()
    )
    + r"|(?P<grade>(?:(?:meyerding|genant)\s+)?grade\s*(?:iv|v|i{1,3}|[1-5])(?![\w]))"
    + r")(?![\w])"
)
_SEVERITY_JOIN = re.compile(r"^\s*(?:to|-|/|or|and)?\s*$")
_GRADE_NUMBER = re.compile(r"(iv|v|i{1,3}|[1-5])\s*$")
_NEG_PRE_RE = re.compile(_NEG_PRE)
_NEG_NORMAL_RE = re.compile(_NEG_NORMAL)
_NEG_POST_RE = re.compile(_NEG_POST)
_UNC_PRE_RE = re.compile(_UNC_PRE)
_UNC_POST_RE = re.compile(_UNC_POST)
_UNC_BOTH_RE = re.compile(_UNC_BOTH)
_QUESTION_RE = re.compile(r"\?")
_TERMINATOR_RE = re.compile(_TERMINATORS)
_SPLITTER_RE = re.compile(_SPLITTERS)
_FILLER_RE = re.compile(rf"^{_FILLER}$")
_CONJUNCTION_RE = re.compile(r"\b(?:and|or)\b|[,;]")
_AND_OR_RE = re.compile(r"\b(?:and|or)\b")
_WORD_RE = re.compile(r"[a-z]+")
_INNER_NOT_RE = re.compile(r"\bnot\b")
_CONGENITAL_QUALIFIER_RE = re.compile(r"\b(?:congenital\w*|developmental\w*|constitutional\w*)\b")
_NORMAL_STATEMENT_RE = re.compile(
    r"\b(?:no|not|normal\w*|unremarkable|preserved|maintained|intact|fine|conus|terminat\w*|visible|imaged|included)\b"
)
_OR_NOR_RE = re.compile(r"\b(?:or|nor)\b")
_ON_GAP_RE = re.compile(r"\s*on\s*$")
_QUALIFIER_SEGMENT_RE = re.compile(r"^\s*(?:extruded|extrusion|sequestered|sequestration|migrated|non[\s-]?contained)\b")

# Levels: a vertebra is a region letter (C, T, Th, D, L, S) and a number; a level
# expression chains vertebrae or bare numbers with "/", "-", "to", "through", "on".
_VERTEBRA = r"(?:th|t|d|c|l|s)\d{1,2}"
_LEVEL_RE = re.compile(
    r"(?<![a-z0-9])(?P<expr>" + _VERTEBRA + r"(?![0-9])"
    r"(?:(?:\s*[/-]\s*(?:th|t|d|c|l|s)?|\s+(?:to|through|thru|on)\s+(?:th|t|d|c|l|s)|(?:th|t|d|c|l|s))\d{1,2}(?![0-9]))*)"
    r"(?![a-z0-9])"
)
_LEVEL_PART_RE = re.compile(
    r"(?P<sep>^|\s*[/-]\s*|\s+(?:to|through|thru|on)\s+|(?=th|t|d|c|l|s))(?P<region>th|t|d|c|l|s)?(?P<num>\d{1,2})"
)
# A vertebra named for a nerve root ("the traversing L5 nerve root", "S1 radiculopathy") is no level of a finding.
_ROOT_AFTER_RE = re.compile(r"\s*(?:nerve\s+)?(?:roots?|radiculopath\w*|dermatom\w*|distribution)\b")
_ROOT_BEFORE_RE = re.compile(r"\b(?:exiting|traversing|descending|existing)\s+(?:(?:left|right|bilateral)\s+)?$")
_ROOT_LOOKBACK = 32
# Typed levels: "C7-T!" (shift-1), "C7-TI" (letter I), "C4-CS" (S for 5); repaired on the raw text.
_LEVEL_DIGIT_TYPO_RE = re.compile(
    r"(?<![A-Za-z0-9])((?:th|t|d|c|l|s)\d{1,2}\s*[-/]\s*(?:th|t|d|c|l|s))([!|iIlS])(?![A-Za-z0-9])", re.I
)
_TYPO_DIGITS = {"!": "1", "|": "1", "i": "1", "I": "1", "l": "1", "S": "5", "s": "5"}
_SEQUENCE_AFTER_RE = re.compile(
    r"\s*[-/]?\s*(?:w\b|wi\b|weight|signal|hyper|hypo|iso|sequence|image|imaging|flow|motion|spinal|cord|inhomog|"
    r"artifact|artefact|shine|change|bright|dark|fat|sag|ax|intens|stir|flair|star|\*|tse|fse|space|fs\b|dixon|"
    r"contrast|gad|post|pre\b|map|relax|and\s+t[12]\b|or\s+t[12]\b|dis[ck]\s+signal)"
)
_SEQUENCE_LOOKBACK = 24  # characters: the longest word of _SEQUENCE_BEFORE_RE with its spaces
_SEQUENCE_BEFORE_RE = re.compile(r"(?:\bon|\bin|\band|\bor|\bweighted|\bsagittal|\baxial|/|loss\s+of(?:\s+normal)?)\s*$")
_AND_BEFORE_AFFIRMED = re.compile(
    r"\band\b(?=\s+(?:(?:"
    + "|".join(w for words in _SEVERITY_WORDS.values() for w in words)
    + r")\b|a\b|an\b|there\b|"
    + _VERTEBRA
    + r"))"
)

_REGION_OF_LETTER = {"c": "C", "t": "T", "th": "T", "d": "T", "l": "L", "s": "S"}
_REGION_MAX = {"C": 7, "T": 13, "L": 7, "S": 5}
_DISC_KINDS = frozenset({"disc", "range", "chain", "on"})  # level mentions that name discs, not one vertebra
_VERTEBRAL_CONDITIONS = frozenset({"fracture", "bone_lesion", "transitional_vertebra", "soft_tissue_edema"})
_UNGRADED_DEGENERATIVE = frozenset(c for c, s in DEGENERATIVE_SEVERITIES.items() if s == ("present",))
_LEVEL_SET = frozenset(LEVELS)
_SENTENCE_END_RE = re.compile(r"(?<!\d)[.!](?!\d)|[.!](?=\s|$)|;")
# A level list of a heading: "L4-5", "L5S1", "T12-L1 through L2-L3", "L4-L5 and L5-S1".
_LEVEL_LIST = (
    _VERTEBRA + r"(?:(?:\s*[/-]\s*(?:th|t|d|c|l|s)?|\s+(?:to|through|thru)\s+(?:th|t|d|c|l|s)?"
    r"|\s*(?:,|&|\band\b)\s*(?:th|t|d|c|l|s)|(?:th|t|d|c|l|s))\d{1,2}(?![0-9]))*"
)
# "L4-5: ...", "L4-L5 level: ...", "L3-4 - ...": the line's level.
_HEADING_RE = re.compile(
    r"^\s*(?:level\s+)?(?P<expr>" + _LEVEL_LIST + r")\s*(?:(?:dis[ck]\s+)?(?:levels?|interspaces?|segments?))?"
    r"\s*(?::|\s[-\u2013\u2014]\s)",
    re.I,
)
# "C4-C5 Disc bulge ...": a disc opening a line, then a capital, heads the line as well.
_LINE_HEADING_RE = re.compile(
    r"^\s*(?P<expr>(?i:" + _VERTEBRA + r"(?:\s*[/-]\s*(?:th|t|d|c|l|s)?|(?:th|t|d|c|l|s))\d{1,2}(?![0-9])))\s+(?=[A-Z])"
)
_LABEL_RE = re.compile(r"^\s*[A-Za-z][A-Za-z -]{0,30}:(?!\d)")
_SECTION_LABEL_RE = re.compile(
    r"^\s*(?:impression|conclusions?|findings|technique|comparison|history|indication|clinical\s+history|"
    r"examination|other|additionally|summary|opinion|report)\s*:",
    re.I,
)
# "At C6/7, severe DOC, desiccation and stenosis.": the sentence's level, like a "C6/7:" heading.
# "At L4-5 there is ..." (comma or not) likewise, unless more levels follow ("At C4/5 and C5/6 ...").
_AT_HEADING_RE = re.compile(
    r"^\s*at\s+(?:the\s+)?(?:level\s+(?:of\s+)?)?(?P<expr>" + _VERTEBRA
    + r"(?:\s*[/-]\s*(?:th|t|d|c|l|s)?\d{1,2})*)(?:\s+(?:dis[ck]\s+)?(?:levels?|interspaces?|segments?))?"
    r"(?:\s*,|(?=\s))(?!\s*(?:(?:and|or|to|through|thru|&)\s+)?" + _VERTEBRA + ")",
    re.I,
)
# "Disc bulges: mild at L1/2; moderate at L5/S1.": the label names the finding of every part.
_LIST_LABEL_RE = re.compile(r"^\s*(?P<label>[A-Za-z][\w /-]{2,60}?)\s*:\s*(?=\S)")


# ---------------------------------------------------------------------------
# Small value types
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _LevelMention:
    start: int
    end: int
    parts: tuple[str, ...]  # vertebrae as written, e.g. ("C3", "C7")
    kind: str  # "single", "disc", "range", "chain", "on" or "invalid" (no vertebra of the spine: "L9/10")


@dataclass
class _Finding:
    start: int
    end: int
    condition: str | None  # None: a finding-like term the vocabulary has no class for
    mentions: list[_LevelMention] = field(default_factory=list)
    severity: int | None = None
    grade: int | None = None
    negated: bool = False
    uncertain: bool = False


@dataclass
class _Cue:
    start: int
    end: int
    kind: str  # "neg_pre", "neg_normal", "neg_post", "unc_pre", "unc_post"


@dataclass(frozen=True)
class ReadSummary:
    """Counts of one reading: reports read, findings (mapped rows), negated and unmapped rows."""

    reports: int
    findings: int
    negated: int
    uncertain: int
    unmapped: int

    def __str__(self) -> str:
        return (
            f"read {self.reports} reports: {self.findings} findings "
            f"({self.negated} negated, {self.uncertain} uncertain), {self.unmapped} unmapped rows"
        )


# ---------------------------------------------------------------------------
# Text normalisation
# ---------------------------------------------------------------------------


def _one_edit_apart(a: str, b: str) -> bool:
    """True if ``a`` and ``b`` differ by one insertion, deletion or substitution."""
    if a == b:
        return True
    la, lb = len(a), len(b)
    if abs(la - lb) > 1:
        return False
    if la > lb:
        a, b, la, lb = b, a, lb, la
    i = 0
    while i < la and a[i] == b[i]:
        i += 1
    if la == lb:
        return a[i + 1 :] == b[i + 1 :]
    return a[i:] == b[i + 1 :]


@functools.lru_cache(maxsize=65536)
def _correct_word(word: str) -> str:
    """Return the keyword ``word`` is one typo away from, or ``word`` itself."""
    if len(word) < _MIN_TYPO_LENGTH or word in _KEYWORD_SET:
        return word
    for length in (len(word), len(word) - 1, len(word) + 1):
        for candidate in _KEYWORDS_BY_LENGTH.get(length, ()):
            if _one_edit_apart(word, candidate):
                return candidate
    return word


@functools.lru_cache(maxsize=16384)
def _normalise(text: str) -> str:
    """Lower-case, unify dashes and brackets, collapse spaces and correct one-letter typos."""
    lowered = text.lower().replace("\u2013", "-").replace("\u2014", "-").replace("\u2012", "-")
    lowered = re.sub(r"[()\[\]{}\"]", " ", lowered)
    lowered = _WORD_RE.sub(lambda m: _correct_word(m.group(0)), lowered)
    return re.sub(r"\s+", " ", lowered).strip()


# ---------------------------------------------------------------------------
# Levels
# ---------------------------------------------------------------------------


@functools.lru_cache(maxsize=64)
def _vertebra_sequence(named: frozenset[str]) -> list[str]:
    """Vertebrae top to bottom; T13, L6 and L7 only when named (do not modify the result)."""
    sequence = [f"C{i}" for i in range(1, 8)] + [f"T{i}" for i in range(1, 13)]
    if "T13" in named:
        sequence.append("T13")
    sequence += [f"L{i}" for i in range(1, 6)]
    if "L6" in named or "L7" in named:
        sequence.append("L6")
    if "L7" in named:
        sequence.append("L7")
    return sequence + [f"S{i}" for i in range(1, 6)]


def _parse_level(expr: str, start: int, end: int) -> _LevelMention | None:
    """Parse one level expression ("c5/6", "c4-th1", "l4 on l5", "l45") or return None if it is no level."""
    parts: list[str] = []
    separators: list[str] = []
    region = ""
    for match in _LEVEL_PART_RE.finditer(expr):
        letter = match.group("region")
        if letter:
            region = _REGION_OF_LETTER[letter]
        digits = match.group("num")
        number = int(digits)
        numbers = [number]
        if region and number > _REGION_MAX[region] and len(digits) == 2 and int(digits[1]) == int(digits[0]) + 1:
            numbers = [int(digits[0]), int(digits[1])]  # "L45" typed for L4/5
        for k, number in enumerate(numbers):
            if not region or number < 1 or number > _REGION_MAX[region]:
                return None
            vertebra = f"{region}{number}"
            if parts and parts[-1] == vertebra:
                continue
            if parts:
                separators.append(match.group("sep").strip() if k == 0 else "/")
            parts.append(vertebra)
    if not parts:
        return None
    if len(parts) == 1:
        kind = "single"
    elif separators == ["on"]:
        kind = "on"
    elif len(parts) > 2:
        kind = "chain"
    else:
        sequence = _vertebra_sequence(frozenset(parts))
        i, j = sequence.index(parts[0]), sequence.index(parts[1])
        kind = "disc" if abs(i - j) == 1 else "range"
    return _LevelMention(start, end, tuple(parts), kind)


def _find_levels(text: str) -> list[_LevelMention]:
    """All level expressions of ``text``, without MRI sequence names (T1, T2) and nerve roots (L5 root).

    An expression that names no vertebra of the spine ("L9/10") is kept as an
    ``invalid`` mention: it still belongs to its finding, which then has no level.
    """
    mentions = []
    for match in _LEVEL_RE.finditer(text):
        if _ROOT_AFTER_RE.match(text, match.end()) or _ROOT_BEFORE_RE.search(
            text, max(0, match.start() - _ROOT_LOOKBACK), match.start()
        ):
            continue
        expr = match.group("expr")
        if re.fullmatch(r"t[12](?:\s*/\s*t?[12])?", expr) and (
            _SEQUENCE_AFTER_RE.match(text, match.end())
            or _SEQUENCE_BEFORE_RE.search(text, max(0, match.start() - _SEQUENCE_LOOKBACK), match.start())
        ):
            continue
        mention = _parse_level(expr, match.start(), match.end())
        mentions.append(mention or _LevelMention(match.start(), match.end(), (), "invalid"))
    return mentions


def _expand(mention: _LevelMention, vertebral: bool, named: frozenset[str] = frozenset()) -> list[str]:
    """The vocabulary levels a mention stands for: discs (by the vertebra above) or vertebrae.

    ``named`` holds the supernumerary vertebrae (T13, L6, L7) the whole report
    names: with an L6, "L5-S1" spans the discs L5/6 and L6/S1.
    """
    parts = list(mention.parts)
    if mention.kind == "invalid":
        return []
    if mention.kind in ("single", "on"):
        levels = parts[:1]
    else:
        sequence = _vertebra_sequence(frozenset(parts) | named)
        index = [sequence.index(p) for p in parts]
        if vertebral:
            low, high = min(index), max(index)
            levels = sequence[low : high + 1]
        else:
            levels = []
            for a, b in zip(index, index[1:]):
                low, high = min(a, b), max(a, b)
                levels += sequence[low:high]
    return [level for level in dict.fromkeys(levels) if level in _LEVEL_SET]


# ---------------------------------------------------------------------------
# One clause
# ---------------------------------------------------------------------------


def _non_overlapping(spans: list[tuple[int, int, object]]) -> list[tuple[int, int, object]]:
    """Keep the earliest, then longest, of overlapping spans."""
    chosen: list[tuple[int, int, object]] = []
    last_end = -1
    for start, end, value in sorted(spans, key=lambda s: (s[0], -(s[1] - s[0]))):
        if start >= last_end:
            chosen.append((start, end, value))
            last_end = end
    return chosen


@functools.lru_cache(maxsize=16384)
def _finding_spans(text: str) -> tuple[tuple[int, int, str | None], ...]:
    return tuple(
        (match.start(), match.end(), _CONDITION_OF_GROUP[match.lastgroup])  # type: ignore[index]
        for match in _KEYWORD_RE.finditer(text)
        if match.end() > match.start()
    )


def _find_findings(text: str) -> list[_Finding]:
    """Condition keywords and unmapped terms of a normalised clause, left to right."""
    findings = []
    for start, end, condition in _finding_spans(text):
        finding = _Finding(start, end, condition)  # type: ignore[arg-type]
        if _INNER_NOT_RE.search(text, start, end):  # "the cord is not compressed"
            finding.negated = True
        findings.append(finding)
    return findings


def _find_cues(text: str) -> list[_Cue]:
    spans: list[tuple[int, int, object]] = []
    for kind, pattern in (
        ("unc_post", _UNC_POST_RE),
        ("neg_post", _NEG_POST_RE),
        ("unc_pre", _UNC_PRE_RE),
        ("neg_pre", _NEG_PRE_RE),
        ("neg_normal", _NEG_NORMAL_RE),
        ("unc_both", _UNC_BOTH_RE),
    ):
        for match in pattern.finditer(text):
            spans.append((match.start(), match.end(), kind))
    for match in _QUESTION_RE.finditer(text):
        following = text[match.end() : match.end() + 2].lstrip()
        spans.append((match.start(), match.end(), "unc_pre" if following[:1].isalpha() else "unc_post"))
    return [_Cue(start, end, kind) for start, end, kind in _non_overlapping(spans)]  # type: ignore[arg-type]


def _find_severities(text: str) -> list[tuple[int, int, int, bool]]:
    """Severity words as (start, end, ordinal, is_grade); adjacent words merge to the higher."""
    found: list[tuple[int, int, int, bool]] = []
    for match in _SEVERITY_RE.finditer(text):
        name = match.lastgroup
        if name == "grade":
            value = _GRADE_VALUES[_GRADE_NUMBER.search(match.group(0)).group(1)]
            is_grade = True
        else:
            value = SEVERITY_ORDINAL[name]
            is_grade = False
        if found and not found[-1][3] and not is_grade and _SEVERITY_JOIN.match(text[found[-1][1] : match.start()]):
            previous = found.pop()
            found.append((previous[0], match.end(), max(previous[2], value), False))
        else:
            found.append((match.start(), match.end(), value, is_grade))
    return found


class _Spans:
    """The matches of one pattern over a text, to ask in O(log n) whether one lies in [start, end).

    The matches of ``finditer`` do not overlap, so their ends rise with their starts.
    """

    __slots__ = ("starts", "ends")

    def __init__(self, pattern: re.Pattern[str], text: str) -> None:
        self.starts: list[int] = []
        self.ends: list[int] = []
        for match in pattern.finditer(text):
            self.starts.append(match.start())
            self.ends.append(match.end())

    def inside(self, start: int, end: int) -> bool:
        """Whether a match lies wholly in [start, end)."""
        i = bisect.bisect_left(self.starts, start)
        return i < len(self.starts) and self.ends[i] <= end

    def count_inside(self, start: int, end: int) -> int:
        """How many matches lie wholly in [start, end)."""
        return max(0, bisect.bisect_right(self.ends, end) - bisect.bisect_left(self.starts, start))


class _ClauseIndex:
    """One normalised clause with the positions every rule asks about, found once.

    Each rule asks "is there a terminator (a conjunction, a word) between these two
    places?" in O(log n), so that reading a clause takes time linear in its length
    (a pasted report can be one clause of a megabyte).
    """

    def __init__(self, text: str, findings: list[_Finding]) -> None:
        self.text = text
        self.findings = findings
        self.starts = [f.start for f in findings]
        self.ends = [f.end for f in findings]
        self._terminators = _Spans(_TERMINATOR_RE, text)
        self._affirmed_and = _Spans(_AND_BEFORE_AFFIRMED, text)
        self.conjunctions = _Spans(_CONJUNCTION_RE, text)
        self.words = _Spans(_WORD_RE, text)

    def has_terminator(self, start: int, end: int) -> bool:
        """Whether a scope ends between ``start`` and ``end`` ("but", "however", "and mild ...")."""
        return start < end and (self._terminators.inside(start, end) or self._affirmed_and.inside(start, end))

    def containing(self, position: int) -> _Finding | None:
        """The finding whose keyword covers ``position``, if any."""
        i = bisect.bisect_right(self.starts, position) - 1
        return self.findings[i] if i >= 0 and self.ends[i] > position else None

    def overlapping(self, start: int, end: int) -> bool:
        """Whether any finding's keyword overlaps [start, end)."""
        i = bisect.bisect_right(self.ends, start)
        return i < len(self.findings) and self.findings[i].start < end


def _has_terminator(text: str, start: int, end: int) -> bool:
    if start >= end:
        return False
    return bool(_TERMINATOR_RE.search(text, start, end) or _AND_BEFORE_AFFIRMED.search(text, start, end))


_PRE_CUES = ("neg_pre", "unc_pre", "neg_normal", "unc_both")
_POST_CUES = ("neg_post", "unc_post", "unc_both")


def _apply_cues(clause: _ClauseIndex, findings: list[_Finding], cues: list[_Cue]) -> None:
    """Set negated/uncertain on the findings of one sub-clause from the cues in it.

    A cue before a finding reaches forward to it, one after it reaches back, unless
    a terminator lies between. Only the nearest cue of each kind is asked: a
    farther one reaches a finding only when the nearer one does.
    """
    by_kind: dict[str, list[_Cue]] = {}
    for cue in cues:
        by_kind.setdefault(cue.kind, []).append(cue)
    if not by_kind:
        return
    cue_starts = {kind: [c.start for c in found] for kind, found in by_kind.items()}
    cue_ends = {kind: [c.end for c in found] for kind, found in by_kind.items()}
    for finding in findings:
        for kind in _PRE_CUES:
            if kind not in by_kind:
                continue
            i = bisect.bisect_right(cue_ends[kind], finding.start) - 1
            if i < 0:
                continue
            cue = by_kind[kind][i]
            if clause.has_terminator(cue.end, finding.start):
                continue
            if kind == "neg_normal" and clause.words.count_inside(cue.end, finding.start) > 3:
                continue
            _flag(finding, kind)
        for kind in _POST_CUES:
            if kind not in by_kind:
                continue
            i = bisect.bisect_left(cue_starts[kind], finding.end)
            if i == len(by_kind[kind]):
                continue
            cue = by_kind[kind][i]
            if not clause.has_terminator(finding.end, cue.start):
                _flag(finding, kind)


def _flag(finding: _Finding, kind: str) -> None:
    if kind.startswith("neg"):
        finding.negated = True
    else:
        finding.uncertain = True


def _add_mentions(finding: _Finding, mentions: list[_LevelMention]) -> None:
    """Give ``mentions`` to ``finding``, each level expression once (a list of repeats stays short)."""
    seen = {(m.parts, m.kind) for m in finding.mentions}
    for mention in mentions:
        if (mention.parts, mention.kind) not in seen:
            seen.add((mention.parts, mention.kind))
            finding.mentions.append(mention)


def _attach_levels(clause: _ClauseIndex, findings: list[_Finding], mentions: list[_LevelMention]) -> list[_LevelMention]:
    """Give each group of level mentions to its finding; return the mentions no finding took."""
    text = clause.text
    groups: list[list[_LevelMention]] = []
    for mention in mentions:
        if groups and _FILLER_RE.match(text[groups[-1][-1].end : mention.start]):
            groups[-1].append(mention)
        else:
            groups.append([mention])
    starts = [f.start for f in findings]
    ends = [f.end for f in findings]
    orphans: list[_LevelMention] = []
    for group in groups:
        i = bisect.bisect_right(ends, group[0].start) - 1
        j = bisect.bisect_left(starts, group[-1].end)
        previous = findings[i] if i >= 0 else None
        following = findings[j] if j < len(findings) else None
        if previous is None and following is None:
            orphans += group
            continue
        if following is None:
            target = previous
        elif previous is None:
            target = following
        elif not previous.mentions and not clause.conjunctions.inside(previous.end, group[0].start):
            target = previous
        else:
            target = following
        _add_mentions(target, group)
    return orphans


_LOCATION = (
    r"(?:central(?:ly)?|right|left|paracentral|posterolateral|posterior|foraminal|extraforaminal|far\s+lateral|lateral"
    r"|subarticular|broad[\s-]based|focal|bilateral|diffuse|circumferential|midline|ventral|dorsal|anterior)"
)
# "large central and right paracentral disc herniation": one finding, its place in two words.
_LOCATION_PAIR_RE = re.compile(rf"\b{_LOCATION}(?:\s+{_LOCATION})*\s+(?:and|or|to)\s+(?={_LOCATION}\b)")
_MAX_SEVERITY_GAP = 160
"""Characters between a severity word and its finding beyond which it qualifies none (a few words, some levels)."""


def _assign_severities(
    clause: _ClauseIndex, findings: list[_Finding], severities: list[tuple[int, int, int, bool]]
) -> bool:
    """Give each severity word to the finding it qualifies; return True if one qualified none."""
    text = clause.text
    starts = [f.start for f in findings]
    ends = [f.end for f in findings]
    dangling = False
    for start, end, value, is_grade in severities:
        target = None
        k = bisect.bisect_right(starts, start) - 1
        if k >= 0 and findings[k].end >= end:
            target = findings[k]  # inside the keyword: "canal is moderately narrowed"
        if target is None:
            j = bisect.bisect_left(starts, end)
            following = findings[j] if j < len(findings) else None
            if following is not None and following.start - end <= _MAX_SEVERITY_GAP:
                gap = _LOCATION_PAIR_RE.sub(" ", text[end : following.start])
                if not _CONJUNCTION_RE.search(gap) and len(_WORD_RE.findall(_LEVEL_RE.sub(" ", gap))) <= 4:
                    target = following
        if target is None:
            i = bisect.bisect_right(ends, start) - 1
            previous = findings[i] if i >= 0 else None
            if previous is not None and start - previous.end <= _MAX_SEVERITY_GAP:
                gap = text[previous.end : start]  # "listhesis L3/4, grade 2": commas allowed after
                if not _AND_OR_RE.search(gap) and len(_WORD_RE.findall(_LEVEL_RE.sub(" ", gap))) <= 3:
                    target = previous
        if target is None:
            dangling = True
            continue
        if is_grade:
            target.grade = max(target.grade or 0, value)
        else:
            target.severity = max(target.severity or 0, value)
    return dangling


_GENERIC_TERM_RE = re.compile(r"abnormalit\w*|degenerative\s+(?:changes?|dis[ck]\s+disease)|lesions?")
_DESCRIPTOR_RE = re.compile(r"hyperintens\w*|hypointens\w*")
_BACK_REFERENCE_RE = re.compile(r"\bas\s+(?:described|detailed|mentioned|noted|above|below)\b")


def _is_remark(clause: _ClauseIndex, term: _Finding, back_reference: bool) -> bool:
    """Whether an unmapped term is no finding of its own and needs no unmapped row.

    That is a term denied ("no significant abnormality", "no foraminal stenosis"), a summary
    pointing back to findings already read ("degenerative changes as
    described above"), or a signal word describing the mapped finding right
    after it ("T2 hyperintense marrow lesion").
    """
    if term.negated:
        return True  # "no foraminal narrowing": a denied term outside the vocabulary says nothing
    term_text = clause.text[term.start : term.end]
    if _GENERIC_TERM_RE.fullmatch(term_text) and back_reference:
        return True
    if _DESCRIPTOR_RE.fullmatch(term_text):
        j = bisect.bisect_left(clause.starts, term.end)
        following = clause.findings[j] if j < len(clause.findings) else None
        if following is not None and following.condition is not None:
            return clause.words.count_inside(term.end, following.start) <= 2
    return False


def _is_degenerative(finding: _Finding) -> bool:
    return finding.condition in DEGENERATIVE_SEVERITIES


def _borrow_levels(findings: list[_Finding]) -> None:
    """A disc finding without a level takes those of the nearest finding that has some."""
    donors = [f for f in findings if f.mentions]
    if not donors:
        return
    donor_starts = [d.start for d in donors]
    for finding in findings:
        if finding.mentions or not _is_degenerative(finding):
            continue
        i = bisect.bisect_right(donor_starts, finding.start)
        donor = donors[i] if i < len(donors) else donors[-1]
        finding.mentions = list(donor.mentions)


def _severity_name(condition: str, finding: _Finding) -> str:
    """The vocabulary severity of a mapped finding (defaults and clamping in the module docstring)."""
    value = finding.severity
    if condition in ("spondylolisthesis", "fracture") and finding.grade:
        value = max(value or 0, finding.grade)
    allowed = DEGENERATIVE_SEVERITIES.get(condition)
    if allowed is not None:
        if condition in _UNGRADED_DEGENERATIVE:
            return "present"
        if value is None:
            return allowed[0]
        if value == 4 and "near_complete" in allowed:
            return "near_complete"
        value = min(value, 3)
        graded = [s for s in allowed if s != "near_complete"]
        return graded[min(value, len(graded)) - 1]
    if value is None:
        return "present"
    return PATHOLOGY_SEVERITIES[min(value, 3)]


@dataclass(frozen=True)
class _Row:
    level: str
    condition: str
    severity: str
    negated: bool
    uncertain: bool
    source_text: str
    mapped: bool


@functools.lru_cache(maxsize=16384)
def _clause_rows(
    source: str,
    heading: tuple[_LevelMention, ...],
    named: frozenset[str] = frozenset(),
    before: tuple[_LevelMention, ...] = (),
) -> tuple[_Row, ...]:
    """The rows of one clause (``source`` is its original text; ``heading`` the line's level;
    ``named`` the supernumerary vertebrae named anywhere in the report; ``before`` the disc
    levels of the nearest clause before it in its sentence that names some)."""
    text = _normalise(source)
    if not text:
        return ()
    findings = _find_findings(text)
    clause = _ClauseIndex(text, findings)
    mentions = [m for m in _find_levels(text) if not clause.overlapping(m.start, m.end)]
    # "L4 anterolisthesis on L5": the vertebra after "on" is the one slipped over, not a level of its own.
    if mentions and any(f.condition == "spondylolisthesis" for f in findings):
        first_end = mentions[0].end
        kept = []
        for m in mentions:
            i = bisect.bisect_right(clause.ends, m.start) - 1
            f = findings[i] if i >= 0 else None
            if (
                f is not None and f.condition == "spondylolisthesis" and first_end <= f.start
                and _ON_GAP_RE.match(text, f.end, m.start)
            ):
                continue
            kept.append(m)
        mentions = kept
    # A cue inside a keyword ("loss of the normal lordosis") qualifies nothing else.
    cues = [c for c in _find_cues(text) if clause.containing(c.start) is None]
    severities = _find_severities(text)

    # A protrusion qualified as extruded/sequestered close by ("extruded disc
    # herniation", "herniation at L5/S1, extruded") is one extrusion.
    for a, b in zip(findings, findings[1:]):
        if {a.condition, b.condition} == {"protrusion", "extrusion"} and b.start - a.end <= _MAX_SEVERITY_GAP:
            gap = _LEVEL_RE.sub(" ", text[a.end : b.start])
            if not re.search(r"\b(?:and|or)\b", gap) and len(_WORD_RE.findall(gap)) <= 3:
                a.condition = b.condition = "extrusion"

    bounds = [0] + [m.start() for m in _SPLITTER_RE.finditer(text)] + [len(text)]
    mention_starts = [m.start for m in mentions]
    severity_starts = [s[0] for s in severities]
    cue_starts = [c.start for c in cues]
    orphans: list[_LevelMention] = []
    dangling = False
    for start, end in zip(bounds, bounds[1:]):
        sub_findings = findings[bisect.bisect_left(clause.starts, start) : bisect.bisect_left(clause.starts, end)]
        sub_mentions = mentions[bisect.bisect_left(mention_starts, start) : bisect.bisect_left(mention_starts, end)]
        sub_severities = severities[
            bisect.bisect_left(severity_starts, start) : bisect.bisect_left(severity_starts, end)
        ]
        if not (sub_findings or sub_mentions or sub_severities):
            continue
        sub_cues = cues[bisect.bisect_left(cue_starts, start) : bisect.bisect_left(cue_starts, end)]
        orphans += _attach_levels(clause, sub_findings, sub_mentions)
        dangling |= _assign_severities(clause, sub_findings, sub_severities)
        _apply_cues(clause, sub_findings, sub_cues)
        _borrow_levels(sub_findings)
    _borrow_levels(findings)
    # "Degenerate L5/6 disc with annular fissure": disc levels that no finding took belong
    # to the disc findings of the clause that name none.
    free_discs = [m for m in orphans if m.kind in _DISC_KINDS]
    for finding in findings:
        if not finding.mentions and free_discs and _is_degenerative(finding):
            finding.mentions = list(free_discs)
    for finding in findings:
        if not finding.mentions and heading:
            finding.mentions = list(heading)
        elif not finding.mentions and before and _is_degenerative(finding):
            # "The L4-5 extrusion has resorbed, with only a small residual protrusion": the sentence's disc.
            finding.mentions = list(before)

    # A stenosis said to be congenital in its clause is also a congenital narrowing.
    if not any(f.condition == "congenital_canal_narrowing" for f in findings) and any(
        not clause.overlapping(m.start(), m.end()) for m in _CONGENITAL_QUALIFIER_RE.finditer(text)
    ):
        # (not a cord compression: that is the stenosis' effect, not a canal called congenital)
        for f in [f for f in findings if f.condition == "spinal_stenosis" and "cord" not in text[f.start : f.end]]:
            twin = _Finding(f.start, f.end, "congenital_canal_narrowing", list(f.mentions))
            twin.negated, twin.uncertain = f.negated, f.uncertain
            findings.append(twin)

    source_text = re.sub(r"\s+", " ", source).strip(" ,;:.")
    rows: list[_Row] = []
    back_reference = bool(_BACK_REFERENCE_RE.search(text))
    unmapped = [f for f in findings if f.condition is None and not _is_remark(clause, f, back_reference)]
    for finding in findings:
        if finding.condition is None:
            continue
        vertebral = finding.condition in _VERTEBRAL_CONDITIONS
        levels = [lvl for m in finding.mentions for lvl in _expand(m, vertebral, named)]
        if not levels and finding.mentions and _is_degenerative(finding):
            # "protrusions L9/10 and C1/2": levels written, none a disc of the vocabulary.
            unmapped.append(finding)
            continue
        severity = _severity_name(finding.condition, finding)
        for level in dict.fromkeys(levels or [""]):
            rows.append(
                _Row(level, finding.condition, severity, finding.negated, finding.uncertain, source_text, True)
            )
    mapped_any = bool(rows)
    keep_unmapped = bool(unmapped) or (
        not mapped_any and (orphans or dangling) and not _NORMAL_STATEMENT_RE.search(text)
    )
    if keep_unmapped:
        level_mentions = [m for f in unmapped for m in f.mentions] + (orphans if not mapped_any else [])
        levels = list(dict.fromkeys(lvl for m in level_mentions for lvl in _expand(m, False, named)))
        flags_from = unmapped[0] if unmapped else None
        negated = flags_from.negated if flags_from else any(c.kind.startswith("neg") for c in cues)
        uncertain = flags_from.uncertain if flags_from else any(c.kind.startswith("unc") for c in cues)
        rows.append(
            _Row(levels[0] if len(levels) == 1 else "", "", "", negated, uncertain, source_text, False)
        )
    return tuple(rows)


# ---------------------------------------------------------------------------
# Clauses of a sentence
# ---------------------------------------------------------------------------


@functools.lru_cache(maxsize=16384)
def _disc_levels(clause: str) -> tuple[_LevelMention, ...]:
    """The disc levels a clause writes ("L4-5", "C3-C5", "L4 on L5"), not single vertebrae or nerve roots."""
    return tuple(m for m in _find_levels(_normalise(clause)) if m.kind in _DISC_KINDS)


def _stands_alone(inner: str, sentence_conditions: Counter) -> bool:
    """Whether bracketed text is a clause of its own rather than a gloss of its clause.

    It stands alone when it names a finding and adds a level, a severity, a cue
    or a condition the rest of the sentence does not name; "(HIZ)" after
    "annular fissure" or "(C6/7)" stay in their clause. ``sentence_conditions``
    counts the conditions of the whole sentence, brackets included.
    """
    inner_text = _normalise(inner)
    inner_conditions = Counter(f.condition for f in _find_findings(inner_text))
    conditions = set(inner_conditions) - {None}
    if not conditions:
        return False
    if _find_levels(inner_text) or _find_severities(inner_text) or _find_cues(inner_text):
        return True
    outer = {c for c, n in sentence_conditions.items() if n > inner_conditions.get(c, 0)}
    return not conditions <= outer


def _split_top_level(sentence: str) -> tuple[list[str], list[str]]:
    """Split at commas outside brackets; pull out bracketed text that names a finding.

    Returns the comma segments (bracketed text that names no finding stays in
    place) and the extracted bracketed clauses.
    """
    if "(" not in sentence and "[" not in sentence:
        return [s for s in sentence.split(",") if s.strip()], []
    segments: list[str] = []
    extracted: list[str] = []
    sentence_conditions = Counter(f.condition for f in _find_findings(_normalise(sentence)))
    depth = 0
    current: list[str] = []
    bracket: list[str] = []
    for char in sentence:
        if char in "([":
            if depth == 0:
                bracket = []
            else:
                bracket.append(char)
            depth += 1
        elif char in ")]" and depth > 0:
            depth -= 1
            if depth == 0:
                inner = "".join(bracket)
                if _stands_alone(inner, sentence_conditions):
                    extracted.append(inner)
                    current.append(" ")
                else:
                    current.append(f"({inner})")
            else:
                bracket.append(char)
        elif depth > 0:
            bracket.append(char)
        elif char == ",":
            segments.append("".join(current))
            current = []
        else:
            current.append(char)
    if depth > 0:  # an unclosed bracket: keep its text in the clause
        current.append("(" + "".join(bracket))
    segments.append("".join(current))
    return [s for s in segments if s.strip()], extracted


@functools.lru_cache(maxsize=16384)
def _segment_profile(segment: str) -> tuple[bool, bool, bool, bool]:
    """(has a finding, only levels, ends inside an open negation, holds "or"/"nor")."""
    text = _normalise(segment)
    findings = _find_findings(text)
    levels = _find_levels(text)
    rest = _LEVEL_RE.sub(" ", text)
    only_levels = bool(levels) and not findings and bool(_FILLER_RE.match(rest))
    # Only the last negation can still be open: a terminator after it ends every earlier one too.
    last = None
    for last in _NEG_PRE_RE.finditer(text):
        pass
    open_negation = bool(
        last is not None and findings and findings[-1].start >= last.end()
        and not _has_terminator(text, last.end(), len(text)) and not _SPLITTER_RE.search(text, last.end())
    )
    return bool(findings), only_levels, open_negation, bool(_OR_NOR_RE.search(text))


def _is_qualifier(segment: str) -> bool:
    """A comma segment that only qualifies the one before: "extruded", "grade 2", "moderate"."""
    text = _normalise(segment)
    if _QUALIFIER_SEGMENT_RE.match(text):
        return True
    severities = _find_severities(text)
    if not severities or _find_findings(text):
        return False
    rest = text
    for start, end, *_ in reversed(severities):
        rest = rest[:start] + " " + rest[end:]
    return bool(_FILLER_RE.match(_LEVEL_RE.sub(" ", rest).strip()))


_ENDS_WITH_LEVEL_RE = re.compile(r"(?<![a-z0-9])" + _VERTEBRA + r"(?:\s*[/-]\s*(?:th|t|d|c|l|s)?\d{1,2})*\s*$")
_STARTS_WITH_LEVEL_RE = re.compile(r"^\s*(?:and\s+|or\s+)?" + _VERTEBRA + r"(?![a-z0-9])")


def _continues_a_level_list(previous: str, segment: str) -> bool:
    """Whether a comma segment goes on with the level list the one before ends with.

    "Disc bulges are seen at C3-4, C4-5 and C5-6 indenting the thecal sac": the
    second segment opens with levels that belong to the bulges.
    """
    return bool(_ENDS_WITH_LEVEL_RE.search(_normalise(previous)) and _STARTS_WITH_LEVEL_RE.match(_normalise(segment)))


def _stops_a_negated_list(segment: str) -> bool:
    """Whether a comma segment ends a negated list: it has a severity or a cue of its own."""
    text = _normalise(segment)
    return bool(_find_severities(text)) or any(k.kind in ("neg_pre", "unc_pre", "unc_post") for k in _find_cues(text))


@functools.lru_cache(maxsize=16384)
def _sentence_clauses(sentence: str) -> tuple[str, ...]:
    """The clauses of one sentence, with level lists and negated lists kept together.

    Every step looks at each comma segment a bounded number of times, so that a
    sentence of any length is split in linear time.
    """
    segments, extracted = _split_top_level(sentence)
    profiles = [_segment_profile(s) for s in segments]
    # Levels opening the sentence ("L3/4, L4/5: ...") belong to the first segment that says more.
    lead = 0
    while lead + 1 < len(segments) and profiles[lead][1]:
        lead += 1
    if lead:
        segments = [",".join(segments[: lead + 1])] + segments[lead + 1 :]
        profiles = [_segment_profile(segments[0])] + profiles[lead + 1 :]
    count = len(segments)
    # "no fracture, listhesis or stenosis": an open negation runs on to the next segment
    # holding "or"/"nor", unless a segment with a severity or a cue of its own comes first.
    stops = [_stops_a_negated_list(s) for s in segments]
    next_event = [count] * (count + 1)
    for k in range(count - 1, -1, -1):
        next_event[k] = k if stops[k] or profiles[k][3] else next_event[k + 1]
    merged: list[list[str]] = []
    i = 0
    while i < count:
        segment, profile = segments[i], profiles[i]
        if merged and (profile[1] or _is_qualifier(segment) or _continues_a_level_list(merged[-1][-1], segment)):
            merged[-1].append(segment)
            i += 1
            continue
        parts = [segment]
        if profile[2]:
            j = next_event[i + 1]
            if j < count and not stops[j]:
                parts = segments[i : j + 1]
                i = j
        merged.append(parts)
        i += 1
    clauses = [",".join(parts) for parts in merged]
    # "the lowest, L6, is a transitional vertebra": a run of levels that names no
    # finding belongs to the clause after it.
    joined: list[str] = []
    carry = ""
    for clause in clauses:
        clause = carry + "," + clause if carry else clause
        carry = ""
        profile = _segment_profile(clause)
        if profile[1] and not profile[0] and len(joined) + 1 < len(clauses):
            carry = clause
            continue
        joined.append(clause)
    if carry:
        joined.append(carry)
    return tuple(joined + extracted)


def _sentences(line: str) -> list[tuple[str, str]]:
    """Split a line at sentence ends (".", "!", ";"), not inside numbers like 2.5.

    Returns:
        (sentence, the delimiter before it: "" for the first, else ".", "!" or ";").
    """
    pieces = []
    start = 0
    delimiter = ""
    for match in _SENTENCE_END_RE.finditer(line):
        pieces.append((line[start : match.start()], delimiter))
        delimiter = match.group(0)
        start = match.end()
    pieces.append((line[start:], delimiter))
    return [(p, d) for p, d in pieces if p.strip()]


def _list_label(sentence: str) -> str | None:
    """The label of "Desiccation: mild at C4/5; moderate at C5/6" if it names one finding, else None."""
    match = _LIST_LABEL_RE.match(sentence)
    if not match:
        return None
    label = _normalise(match.group("label"))
    conditions = {f.condition for f in _find_findings(label)}
    if len(conditions) != 1 or None in conditions or _find_levels(label):
        return None
    rest = _normalise(sentence[match.end() :])
    severities = _find_severities(rest)
    if not severities or severities[0][0] != 0:
        return None
    return match.group("label")


def _starts_with_severity(sentence: str) -> bool:
    """Whether a sentence opens with a severity and names no finding ("moderate at C5/6")."""
    text = _normalise(sentence)
    severities = _find_severities(text)
    return bool(severities) and severities[0][0] == 0 and not any(f.condition for f in _find_findings(text))


# ---------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------


def _is_empty_note(text: object) -> bool:
    if text is None:
        return True
    if isinstance(text, float) and text != text:  # NaN
        return True
    try:
        if pd.isna(text):
            return True
    except (TypeError, ValueError):
        pass
    stripped = str(text).strip().lower()
    return stripped in EMPTY_NOTES or not any(c.isalnum() for c in stripped)


def _merge_key(row: _Row) -> tuple[int, int, int]:
    return (int(not row.negated), int(not row.uncertain), SEVERITY_ORDINAL.get(row.severity, 0))


_LINE_RE = re.compile(r"\r\n|\r|\n")
_SUPERNUMERARY_RE = re.compile(r"(?<![a-z0-9])(?:t13|l6|l7)(?![0-9])")


def _place_levelless(rows: list[_Row], text: str) -> list[_Row]:
    """Settle affirmed transitional vertebrae written without a level.

    A transitional vertebra without a level is the supernumerary vertebra the
    report names (T13, L6 or L7: "six lumbar-type vertebrae ... the lowest,
    L6, is a transitional vertebra"), and a level-less one is dropped when a
    transitional vertebra is affirmed with a level elsewhere in the report
    (the same vertebra, named twice). Other level-less findings stay as they are.
    """
    affirmed = [r for r in rows if r.mapped and not r.negated]
    if not any(not r.level for r in affirmed):
        return rows
    named = _SUPERNUMERARY_RE.findall(_normalise(text))
    placed: list[_Row] = []
    for row in rows:
        if row.mapped and not row.negated and not row.level:
            if row.condition == "transitional_vertebra" and named:
                row = _Row(named[-1].upper(), row.condition, row.severity, row.negated, row.uncertain,
                           row.source_text, row.mapped)
            elif row.condition == "transitional_vertebra" and any(
                r.condition == row.condition and r.level for r in affirmed
            ):
                continue
        placed.append(row)
    return placed


def _report_rows(text: object, report_id: str) -> list[tuple]:
    """Rows of one report as tuples in :data:`FINDINGS_COLUMNS` order."""
    if _is_empty_note(text):
        return []
    text = _LEVEL_DIGIT_TYPO_RE.sub(lambda m: m.group(1) + _TYPO_DIGITS[m.group(2)], str(text))
    rows: list[_Row] = []
    named = frozenset(level.upper() for level in _SUPERNUMERARY_RE.findall(_normalise(text)))
    carried: tuple[_LevelMention, ...] = ()  # a heading on a line of its own, for the lines below it
    for line in _LINE_RE.split(text):
        if not line.strip():
            carried = ()
            continue
        heading = carried
        list_label: str | None = None
        sentences = _sentences(line)
        for index, (sentence, delimiter) in enumerate(sentences):
            section = _SECTION_LABEL_RE.match(sentence)
            if section:
                heading = carried = ()
                sentence = sentence[section.end() :]
            label = _LABEL_RE.match(sentence)
            if label and not _find_findings(_normalise(label.group(0))):
                heading = carried = ()
                sentence = sentence[label.end() :]
            if delimiter == ";" and list_label and _starts_with_severity(sentence):
                # "Desiccation: mild at C4/5; moderate at C5/6": the label's finding, again.
                sentence = f"{list_label} {sentence.strip()}"
            else:
                list_label = _list_label(sentence)
            match = _HEADING_RE.match(sentence) or _AT_HEADING_RE.match(sentence)
            if match is None and index == 0:
                match = _LINE_HEADING_RE.match(sentence)
            if match:
                heading = tuple(m for m in _find_levels(_normalise(match.group("expr"))) if m.kind != "invalid")
                sentence = sentence[match.end() :]
                carried = heading if not sentence.strip() and index == len(sentences) - 1 else ()
            elif heading and _find_levels(_normalise(sentence)):
                heading = carried = ()  # a sentence naming its own levels ends the line's heading
            before: tuple[_LevelMention, ...] = ()
            for clause in _sentence_clauses(sentence):
                rows += _clause_rows(clause, heading, named, before)
                before = _disc_levels(clause) or before

    rows = _place_levelless(rows, text)
    merged: dict[tuple[str, str], int] = {}
    kept: list[_Row] = []
    for row in rows:
        if not row.mapped:
            kept.append(row)
            continue
        key = (row.level, row.condition)
        if key not in merged:
            merged[key] = len(kept)
            kept.append(row)
        elif _merge_key(row) > _merge_key(kept[merged[key]]):
            kept[merged[key]] = row
    if not kept:
        whole = re.sub(r"\s+", " ", text).strip()
        normalised = _normalise(whole)
        kept.append(
            _Row(
                "",
                "",
                "",
                bool(_NEG_PRE_RE.search(normalised) or _NEG_POST_RE.search(normalised)),
                bool(_UNC_PRE_RE.search(normalised) or _UNC_POST_RE.search(normalised) or "?" in whole),
                whole,
                False,
            )
        )
    return [
        (report_id, r.level, r.condition, r.severity, r.negated, r.uncertain, r.source_text, r.mapped) for r in kept
    ]


_BOOL_COLUMNS = frozenset({"negated", "uncertain", "mapped"})


def _findings_frame(rows: list[tuple]) -> pd.DataFrame:
    columns = list(zip(*rows)) if rows else [()] * len(FINDINGS_COLUMNS)
    return pd.DataFrame(
        {
            name: pd.Series(values, dtype=bool if name in _BOOL_COLUMNS else object)
            for name, values in zip(FINDINGS_COLUMNS, columns)
        }
    )


def read_report(text: str, report_id: str = "") -> pd.DataFrame:
    """Read one free-text radiology report into findings rows.

    Args:
        text: the report; None, NaN, "" or "n/a" give no rows.
        report_id: the ``series_id`` written on every row.

    Returns:
        A DataFrame with the columns of :data:`FINDINGS_COLUMNS` (also when empty):
        one row per (level, condition), plus unmapped rows (``mapped=False``)
        for text the reader could not map.

    Example:
        >>> read_report("no spinal cord compression")[["condition", "negated"]].values.tolist()
        [['spinal_stenosis', True]]
    """
    return _findings_frame(_report_rows(text, str(report_id)))


def read_reports(table: pd.DataFrame, id_column: str, text_column: str) -> pd.DataFrame:
    """Read every report of a table; all rows concatenated in table order.

    Args:
        table: one report per row.
        id_column: the column holding the report (series) id.
        text_column: the column holding the report text; empty notes give no rows.

    Raises:
        UserError: if either column is missing.
    """
    missing = [c for c in (id_column, text_column) if c not in table.columns]
    if missing:
        raise UserError(
            f"Expected column(s) {', '.join(repr(c) for c in missing)} in the reports table, "
            f"found {', '.join(repr(str(c)) for c in table.columns) or 'no columns'}."
        )
    rows: list[tuple] = []
    for report_id, text in zip(table[id_column].tolist(), table[text_column].tolist()):
        rows += _report_rows(text, "" if _is_empty_note(report_id) else str(report_id))
    return _findings_frame(rows)


def summarize_findings(findings: pd.DataFrame, reports: int) -> ReadSummary:
    """Count the findings (mapped rows), negated and uncertain findings, and unmapped rows."""
    mapped = findings[findings["mapped"]]
    return ReadSummary(
        reports=reports,
        findings=len(mapped),
        negated=int(mapped["negated"].sum()),
        uncertain=int(mapped["uncertain"].sum()),
        unmapped=int((~findings["mapped"]).sum()),
    )


def _separator(path: Path) -> str:
    return "\t" if path.suffix.lower() == ".tsv" else ","


def load_reports_table(path: Path, id_column: str, text_column: str) -> pd.DataFrame:
    """Load a CSV (or ``.tsv``) of reports, checking the file and both columns.

    Raises:
        UserError: if the file is missing or unreadable, a column is missing, or
            the text column holds no text at all.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"Expected a reports table at {path}, found no such file.")
    from spineage.findings.report_text import read_report_text

    try:
        table = pd.read_csv(io.StringIO(read_report_text(path)), sep=_separator(path), dtype=str, keep_default_na=True)
    except pd.errors.EmptyDataError:
        raise UserError(f"Expected a reports table with a header row in {path}, found an empty file.") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as error:
        raise UserError(f"Expected a readable {'TSV' if _separator(path) == chr(9) else 'CSV'} file at {path}, "
                        f"found one that does not parse ({str(error).splitlines()[0]}).") from None
    missing = [c for c in (id_column, text_column) if c not in table.columns]
    if missing:
        raise UserError(
            f"Expected column(s) {', '.join(repr(c) for c in missing)} in {path}, "
            f"found {', '.join(repr(str(c)) for c in table.columns)}."
        )
    if all(_is_empty_note(t) for t in table[text_column].tolist()):
        raise UserError(
            f"Expected report text in column {text_column!r} of {path}, found it empty in all {len(table)} rows."
        )
    return table


def write_findings(findings: pd.DataFrame, out: Path) -> Path:
    """Write the findings table as CSV (TSV if ``out`` ends in .tsv), atomically.

    The table goes to a temporary file beside ``out`` that then replaces it, so
    an interrupted write never leaves a half-written table.
    """
    out = Path(out)
    return write_atomic(out, lambda p: findings.to_csv(p, index=False, sep=_separator(out), encoding="utf-8"))


def parse_report_table(
    path: Path, id_column: str, text_column: str, out: Path | None = None
) -> tuple[pd.DataFrame, ReadSummary]:
    """Read every report of a CSV/TSV table into the findings table, and write it to ``out``.

    Args:
        path: the reports table (tab-separated when it ends in .tsv).
        id_column: the report (series) id column.
        text_column: the report text column.
        out: the findings table to write (TSV when it ends in .tsv, else CSV), or None to write nothing.

    Returns:
        The findings table and the counts of the reading, for a one-line summary.

    Raises:
        UserError: for a missing file or column or an empty text column; nothing is written then.
    """
    table = load_reports_table(path, id_column, text_column)
    findings = read_reports(table, id_column, text_column)
    if out is not None:
        write_findings(findings, out)
    reports = sum(not _is_empty_note(t) for t in table[text_column].tolist())
    return findings, summarize_findings(findings, reports)
