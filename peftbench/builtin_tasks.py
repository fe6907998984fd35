"""Built-in tasks generated deterministically from a seed, so the offline default suite needs no download.

Every generator takes ``(n, seed)`` and returns a list of plain dict rows. Generation
uses a private ``random.Random(seed)`` only (never the global ``random`` state, never
``hash()``), so the same arguments always give the identical list, on any machine
and any Python version that keeps ``random.Random``'s documented reproducibility.

Rows are unique within one call: a caller that needs train and eval data should ask
for ``n_train + n_eval`` rows in ONE call and split them (see :func:`split_rows`),
which guarantees there is no overlap between the two parts.

This module is pure standard library (no torch / numpy / transformers).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

__all__ = [
    "TaskSpec",
    "TASKS",
    "sentiment_negation",
    "word_copy",
    "split_rows",
]

# ---------------------------------------------------------------------------
# Vocabulary for sentiment_negation
# ---------------------------------------------------------------------------

# Subjects that any adjective below can sensibly describe.
_SUBJECTS = (
    "food", "service", "movie", "plot", "room", "staff", "battery", "screen",
    "music", "hotel", "app", "camera", "coffee", "view", "story", "acting",
    "keyboard", "delivery", "price", "soundtrack", "ending", "menu", "bed",
    "design", "game", "show", "book", "laptop", "trip", "concert",
)

_POS_ADJ = (
    "wonderful", "great", "excellent", "superb", "delightful", "lovely", "good",
    "fantastic", "pleasant", "impressive", "amazing", "brilliant", "enjoyable",
    "solid", "charming", "terrific", "outstanding", "marvelous", "splendid",
    "fabulous", "stellar", "magnificent", "exceptional", "refreshing", "satisfying",
    "remarkable", "memorable", "polished", "elegant", "flawless", "nice", "decent",
    "stunning", "phenomenal", "superior",
)

_NEG_ADJ = (
    "terrible", "awful", "dull", "poor", "disappointing", "bad", "horrible",
    "boring", "mediocre", "dreadful", "weak", "annoying", "lousy", "frustrating",
    "bland", "tedious", "atrocious", "abysmal", "pathetic", "miserable", "dismal",
    "shoddy", "sloppy", "clumsy", "awkward", "lackluster", "forgettable", "subpar",
    "inferior", "painful", "irritating", "depressing", "appalling", "horrendous",
    "pitiful",
)

# Negative words formed by a negative prefix; "not <word>" reads as positive (litotes).
_NEG_PREFIXED = (
    "unpleasant", "unimpressive", "unreliable", "uncomfortable", "unsatisfying",
    "unfriendly", "uninspired", "unacceptable", "unbearable", "unremarkable",
)

# Verbs for "everyone / nobody / i did not ..." templates: (past tense, base form).
_POS_VERB = (
    ("loved", "love"), ("liked", "like"), ("enjoyed", "enjoy"),
    ("praised", "praise"), ("recommended", "recommend"), ("admired", "admire"),
)
_NEG_VERB = (
    ("hated", "hate"), ("disliked", "dislike"), ("complained about", "complain about"),
    ("criticized", "criticize"), ("regretted buying", "regret buying"), ("mocked", "mock"),
)

_COPULA = ("was", "is", "seemed", "felt")
_INTENS = ("", "", "", "really ", "quite ", "very ", "truly ", "pretty ")
_NEGATOR = ("not", "not", "never", "hardly", "not at all", "by no means")


def _adj(rng: random.Random, positive: bool) -> str:
    return rng.choice(_POS_ADJ if positive else _NEG_ADJ)


def _two_subjects(rng: random.Random) -> tuple[str, str]:
    s1, s2 = rng.sample(_SUBJECTS, 2)
    return s1, s2


# ---------------------------------------------------------------------------
# Templates. Each takes (rng, label) and returns a sentence whose label is
# `label` (1 positive, 0 negative) under the rule documented on the template.
# ---------------------------------------------------------------------------


def _t_simple(rng: random.Random, label: int) -> str:
    # Rule: plain statement, the adjective's polarity decides.
    #   "the food was wonderful" -> 1 ; "the screen seemed quite dull" -> 0
    s = rng.choice(_SUBJECTS)
    return f"the {s} {rng.choice(_COPULA)} {rng.choice(_INTENS)}{_adj(rng, label == 1)}"


def _t_simple_opinion(rng: random.Random, label: int) -> str:
    # Rule: first-person opinion without negation, the adjective decides.
    #   "i thought the plot was superb" -> 1
    s = rng.choice(_SUBJECTS)
    lead = rng.choice(("i thought", "i found that", "honestly,", "in my opinion"))
    return f"{lead} the {s} was {rng.choice(_INTENS)}{_adj(rng, label == 1)}"


def _t_negation(rng: random.Random, label: int) -> str:
    # Rule: a negator flips the adjective: label = NOT polarity(adj).
    #   "the food was not wonderful" -> 0 ; "the staff was hardly annoying" -> 1
    s = rng.choice(_SUBJECTS)
    neg = rng.choice(_NEGATOR)
    adj = _adj(rng, label == 0)
    if neg == "not at all":
        return f"the {s} was not {adj} at all"
    if neg == "by no means":
        return f"the {s} was by no means {adj}"
    return f"the {s} {rng.choice(('was', 'is'))} {neg} {adj}"


def _t_negated_opinion(rng: random.Random, label: int) -> str:
    # Rule: negated first-person opinion, label = NOT polarity(adj).
    #   "i would never call the service good" -> 0
    #   "nobody could say the room was dull" -> 1
    #   "it is not true that the app was great" -> 0
    s = rng.choice(_SUBJECTS)
    adj = _adj(rng, label == 0)
    form = rng.randrange(5)
    if form == 0:
        return f"i would never call the {s} {adj}"
    if form == 4:
        return f"it is not true that the {s} was {adj}"
    if form == 1:
        return f"nobody could say the {s} was {adj}"
    if form == 2:
        return f"i did not find the {s} {adj}"
    return f"i would not describe the {s} as {adj}"


def _t_double_negation(rng: random.Random, label: int) -> str:
    # Rule: a negated negative reads as positive, a negated "un-"word too:
    #   label 1: "the staff was not unfriendly", "it was not bad at all",
    #            "the app was never unreliable"
    # label 0: a negated positive, phrased with the same "at all" / "un-" style
    #   surface so surface cues do not give the label away:
    #            "the movie was not good at all", "the bed was not pleasant either"
    s = rng.choice(_SUBJECTS)
    form = rng.randrange(3)
    if label == 1:
        if form == 0:
            return f"the {s} was {rng.choice(('not', 'never'))} {rng.choice(_NEG_PREFIXED)}"
        if form == 1:
            return f"the {s} was not {rng.choice(_NEG_ADJ)} at all"
        return f"it was not {rng.choice(_NEG_ADJ)} at all, the {s} i mean"
    if form == 0:
        return f"the {s} was {rng.choice(('not', 'never'))} {rng.choice(_POS_ADJ)} either"
    if form == 1:
        return f"the {s} was not {rng.choice(_POS_ADJ)} at all"
    return f"it was not {rng.choice(_POS_ADJ)} at all, the {s} i mean"


def _t_contrast_but(rng: random.Random, label: int) -> str:
    # Rule: "X, but Y" -> the clause after "but" decides; the first clause
    # always has the opposite polarity.
    #   "the plot was dull, but the acting was superb" -> 1
    s1, s2 = _two_subjects(rng)
    a1, a2 = _adj(rng, label == 0), _adj(rng, label == 1)
    return f"the {s1} was {a1}, but the {s2} was {rng.choice(_INTENS)}{a2}"


def _t_contrast_although(rng: random.Random, label: int) -> str:
    # Rule: "although X, Y" -> the main clause Y decides (X has the opposite polarity).
    #   "although the room was lovely, the staff was rude" -> 0
    s1, s2 = _two_subjects(rng)
    a1, a2 = _adj(rng, label == 0), _adj(rng, label == 1)
    conj = rng.choice(("although", "even though", "while"))
    return f"{conj} the {s1} was {a1}, the {s2} was {rng.choice(_INTENS)}{a2}"


def _t_contrast_although_after(rng: random.Random, label: int) -> str:
    # Rule: "Y although X" -> the main clause Y (first here) decides.
    #   "the coffee was excellent although the menu was boring" -> 1
    s1, s2 = _two_subjects(rng)
    a_main, a_sub = _adj(rng, label == 1), _adj(rng, label == 0)
    return f"the {s1} was {a_main} although the {s2} was {a_sub}"


def _t_contrast_however(rng: random.Random, label: int) -> str:
    # Rule: "X; however, Y" -> the clause after "however" decides (X opposite).
    #   "the screen was great; however, the battery was awful" -> 0
    s1, s2 = _two_subjects(rng)
    a1, a2 = _adj(rng, label == 0), _adj(rng, label == 1)
    return f"the {s1} was {a1}; however, the {s2} was {a2}"


def _t_contrast_negated(rng: random.Random, label: int) -> str:
    # Rule: "X, but Y" where Y is negated -> label = NOT polarity(adj in Y);
    # X carries the same surface polarity as Y's adjective, so the negation
    # AND the contrast both matter.
    #   "the view was lovely, but the hotel was not good" -> 0
    #   "the menu was boring, but the food was not bad at all" -> 1
    s1, s2 = _two_subjects(rng)
    a2 = _adj(rng, label == 0)
    a1 = _adj(rng, label == 0)
    tail = rng.choice(("", " at all"))
    return f"the {s1} was {a1}, but the {s2} was not {a2}{tail}"


def _predicate(rng: random.Random, positive: bool) -> str:
    # A verb phrase whose meaning has the given polarity, in one of several forms:
    #   plain        "was lovely"                  -> polarity(adj)
    #   negated      "was not dull"                -> NOT polarity(adj)
    #   idiom        "was far from perfect"        -> NOT polarity(adj)
    #   un-word      "was not unfriendly" (pos) / "was unfriendly" (neg)
    #   comparative  "could not have been better" (pos) / "could have been better" (neg)
    r = rng.random()
    if r < 0.45:
        return f"was {rng.choice(_INTENS)}{_adj(rng, positive)}"
    if r < 0.70:
        return f"was not {_adj(rng, not positive)}"
    if r < 0.80:
        return f"was {rng.choice(('anything but', 'far from'))} {_adj(rng, not positive)}"
    if r < 0.90:
        return f"was {'not ' if positive else ''}{rng.choice(_NEG_PREFIXED)}"
    return "could not have been better" if positive else "could have been better"


def _t_contrast_mixed(rng: random.Random, label: int) -> str:
    # Rule: two clauses of OPPOSITE polarity joined by a contrast connective; each
    # clause may itself be negated / idiomatic (see _predicate). The decisive clause is:
    #   "A, but B" / "A, yet B" / "A; however, B" -> B  (clause after the connective)
    #   "although A, B"                           -> B  (main clause)
    #   "B even though A"                         -> B  (main clause, first here)
    #   "the food was not bad, but the service was far from friendly" -> 0
    #   "although the plot was not great, the acting was not bad at all" ... -> 1
    s1, s2 = _two_subjects(rng)
    a = f"the {s1} {_predicate(rng, label == 0)}"
    b = f"the {s2} {_predicate(rng, label == 1)}"
    form = rng.randrange(5)
    if form == 0:
        return f"{a}, but {b}"
    if form == 1:
        return f"{a}, yet {b}"
    if form == 2:
        return f"{a}; however, {b}"
    if form == 3:
        return f"although {a}, {b}"
    return f"{b} even though {a}"


def _t_expectation(rng: random.Random, label: int) -> str:
    # Rule: "i expected X to be A, but it was B" -> B (the actual outcome) decides;
    # A has the opposite polarity.
    #   "i expected the camera to be great, but it was disappointing" -> 0
    s = rng.choice(_SUBJECTS)
    a1, a2 = _adj(rng, label == 0), _adj(rng, label == 1)
    return f"i expected the {s} to be {a1}, but it was {rng.choice(_INTENS)}{a2}"


def _t_anything_but(rng: random.Random, label: int) -> str:
    # Rule: "anything but / far from / less than A" means NOT A: label = NOT polarity(A).
    # ("less than" only before a positive adjective, so it only yields label 0.)
    #   "the hotel was anything but pleasant" -> 0 ; "the plot was far from boring" -> 1
    s = rng.choice(_SUBJECTS)
    adj = _adj(rng, label == 0)
    phrases = ("anything but", "far from", "less than") if label == 0 else ("anything but", "far from")
    return f"the {s} {rng.choice(('was', 'is'))} {rng.choice(phrases)} {adj}"


def _t_comparative(rng: random.Random, label: int) -> str:
    # Rule: idiomatic comparatives; the meaning, not the surface words, decides.
    # Several positive sentences contain a negator and a negative one contains
    # "better", so neither "not"/"never" nor "better"/"worse" alone gives the label.
    #   label 1: "i could not have asked for a better room", "i have never seen a better app",
    #            "the food could not have been better", "it is hard to imagine a better show"
    #   label 0: "i have never seen a worse app", "the food could not have been worse",
    #            "it is hard to imagine a worse show", "the room could have been much better"
    s = rng.choice(_SUBJECTS)
    if label == 1:
        forms = (
            f"i could not have asked for a better {s}",
            f"i have never seen a better {s}",
            f"the {s} could not have been better",
            f"it is hard to imagine a better {s}",
        )
    else:
        forms = (
            f"i have never seen a worse {s}",
            f"the {s} could not have been worse",
            f"it is hard to imagine a worse {s}",
            f"the {s} could have been {rng.choice(('much', 'far', 'a lot'))} better",
        )
    return rng.choice(forms)


def _t_verb(rng: random.Random, label: int) -> str:
    # Rule: attitude verbs; a negated subject ("nobody") or "did not" flips the verb:
    #   "everyone loved the movie" -> 1 ; "nobody loved the movie" -> 0
    #   "nobody complained about the service" -> 1 ; "i did not enjoy the trip" -> 0
    s = rng.choice(_SUBJECTS)
    negated = rng.random() < 0.6
    positive_verb = (label == 1) != negated
    past, base = rng.choice(_POS_VERB if positive_verb else _NEG_VERB)
    if not negated:
        return f"{rng.choice(('everyone', 'i', 'my friends', 'we'))} {past} the {s}"
    if rng.random() < 0.5:
        return f"{rng.choice(('nobody', 'no one'))} {past} the {s}"
    return f"{rng.choice(('i', 'we', 'my friends'))} did not {base} the {s}"


# (template, weight). Weights sum to 100, so each is a percentage of rows.
# Groups: ~38% plain statements (surface polarity = label), ~25% negation-style
# (negated / idiomatic / double negation: surface polarity mostly != label),
# ~9% attitude verbs and comparatives, ~29% contrast clauses (both polarities
# present; the position of the decisive clause matters).
# Tuned so that a linear probe on frozen all-MiniLM-L6-v2 stays near the
# lexical ceiling (~60%) while LoRA / full fine-tuning learn the rules.
_SENTIMENT_TEMPLATES: tuple[tuple[Callable[[random.Random, int], str], int], ...] = (
    (_t_simple, 28),
    (_t_simple_opinion, 10),
    (_t_negation, 10),
    (_t_negated_opinion, 5),
    (_t_double_negation, 5),
    (_t_anything_but, 4),
    (_t_comparative, 4),
    (_t_verb, 5),
    (_t_contrast_but, 4),
    (_t_contrast_although, 3),
    (_t_contrast_although_after, 2),
    (_t_contrast_however, 2),
    (_t_contrast_negated, 2),
    (_t_expectation, 2),
    (_t_contrast_mixed, 14),
)


def _check_n(n: int) -> None:
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        raise ValueError(f"n must be a non-negative int, got {n!r}")


def _balanced_labels(rng: random.Random, n: int) -> list[int]:
    labels = [1] * (n // 2) + [0] * (n // 2)
    if n % 2:
        labels.append(rng.randrange(2))
    rng.shuffle(labels)
    return labels


def sentiment_negation(n: int, seed: int) -> list[dict]:
    """Binary sentiment sentences with negation and contrast clauses.

    Each row is ``{"text": str, "label": int}`` (1 positive, 0 negative). Texts are
    unique within one call, labels are balanced (exactly half, or within one for
    odd ``n``), and ``(n, seed)`` fully determines the output.
    """
    _check_n(n)
    rng = random.Random(seed)
    templates = [t for t, _ in _SENTIMENT_TEMPLATES]
    weights = [w for _, w in _SENTIMENT_TEMPLATES]
    seen: set[str] = set()
    rows: list[dict] = []
    for label in _balanced_labels(rng, n):
        for _ in range(10_000):
            template = rng.choices(templates, weights=weights, k=1)[0]
            text = template(rng, label)
            if text not in seen:
                break
        else:  # pragma: no cover - the template space is far larger than any sane n
            raise ValueError(f"could not generate {n} unique sentiment rows")
        seen.add(text)
        rows.append({"text": text, "label": label})
    return rows


# ---------------------------------------------------------------------------
# word_copy
# ---------------------------------------------------------------------------

_COPY_WORDS = (
    "red", "blue", "green", "fox", "dog", "cat", "sun", "moon", "tree", "house",
    "car", "book", "fish", "bird", "cup", "hat", "road", "river", "stone", "apple",
    "water", "fire", "door", "light", "rain", "snow", "star", "hand", "box", "ship",
    "milk", "bread", "king", "city", "field", "song", "clock", "chair", "table", "ring",
)

WORD_COPY_SOURCE = "builtin:word-copy"
WORD_REVERSE_SOURCE = "builtin:word-reverse"


def _word_rows(n: int, seed: int, verb: str, answer, source: str) -> list[dict]:
    """Rows ``{"input": f"{verb}: <words>", "output": answer(words), "source": source}`` over 2-5 words drawn from
    a small fixed list of common lowercase English words; inputs unique within one call, ``(n, seed)`` decides."""
    _check_n(n)
    rng = random.Random(seed)
    seen: set[str] = set()
    rows: list[dict] = []
    for _ in range(n):
        for _ in range(10_000):
            k = rng.randint(2, 5)
            words = [rng.choice(_COPY_WORDS) for _ in range(k)]
            if " ".join(words) not in seen:
                break
        else:  # pragma: no cover
            raise ValueError(f"could not generate {n} unique {source} rows")
        seen.add(" ".join(words))
        rows.append({"input": f"{verb}: {' '.join(words)}", "output": " ".join(answer(words)), "source": source})
    return rows


def word_copy(n: int, seed: int) -> list[dict]:
    """Causal-LM generation task in the instruction format.

    Rows are ``{"input": "copy: red fox blue", "output": "red fox blue",
    "source": "builtin:word-copy"}``: 2-5 words drawn from a small fixed list of
    common lowercase English words; the target is the words verbatim. Inputs are
    unique within one call and ``(n, seed)`` fully determines the output.
    """
    return _word_rows(n, seed, "copy", lambda words: words, WORD_COPY_SOURCE)


def word_reverse(n: int, seed: int) -> list[dict]:
    """The companion of word-copy over the same words: ``{"input": "reverse: red fox blue", "output": "blue fox
    red"}``. Two tasks on one vocabulary and format, so adapters trained on each can be blended and scored on both."""
    return _word_rows(n, seed, "reverse", lambda words: words[::-1], WORD_REVERSE_SOURCE)


# ---------------------------------------------------------------------------
# Helpers and registry
# ---------------------------------------------------------------------------


def split_rows(rows: list, n_train: int, n_eval: int) -> tuple[list, list]:
    """Split rows from ONE generator call into (train, eval) without overlap.

    ``train = rows[:n_train]``, ``eval = rows[n_train:n_train + n_eval]``. Raises
    ``ValueError`` if there are fewer than ``n_train + n_eval`` rows.
    """
    if n_train < 0 or n_eval < 0:
        raise ValueError("n_train and n_eval must be non-negative")
    if len(rows) < n_train + n_eval:
        raise ValueError(f"need {n_train + n_eval} rows, got {len(rows)}")
    rows = list(rows)
    return rows[:n_train], rows[n_train:n_train + n_eval]


@dataclass(frozen=True)
class TaskSpec:
    """A built-in task: ``generate(n, seed) -> list[dict]``."""

    name: str
    kind: str  # "classification" | "causal_lm"
    generate: Callable[[int, int], list]
    num_labels: int | None
    description: str


TASKS: dict[str, TaskSpec] = {
    "sentiment-negation": TaskSpec(
        name="sentiment-negation",
        kind="classification",
        generate=sentiment_negation,
        num_labels=2,
        description="Binary sentiment with negation, double negation and but/although/however contrast clauses.",
    ),
    "word-copy": TaskSpec(
        name="word-copy",
        kind="causal_lm",
        generate=word_copy,
        num_labels=None,
        description="Copy 2-5 common lowercase words verbatim ('copy: red fox' -> 'red fox').",
    ),
    "word-reverse": TaskSpec(
        name="word-reverse",
        kind="causal_lm",
        generate=word_reverse,
        num_labels=None,
        description="Reverse 2-5 common lowercase words ('reverse: red fox' -> 'fox red').",
    ),
}
