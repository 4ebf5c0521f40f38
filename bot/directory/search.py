"""Fuzzy search over the directory: "royal oldham hospitl" -> Royal Oldham Hospital.

People type a service the way they remember it: misspelt, without "care home" or "Ltd",
with the town added, or just a postcode. The regulator's own search weighs the name most,
then the postcode, then the address, ignores filler words and strips spaces from postcodes;
this index does the same.

Scoring fuzzy scorers over 50,000 names for every query is too slow (token_set_ratio over
50k strings takes ~70 ms on a small machine), so a query runs in two stages:

1. *Candidates.* Each query word is matched against the vocabulary of distinct words in
   names and addresses (rapidfuzz `fuzz.ratio`, only against words of a compatible length,
   plus prefixes), and the locations holding those words are ranked by how rare the words
   are (IDF), names counting more than addresses. Postcodes are looked up exactly, by full
   code or by outward code.
2. *Scoring.* The best ~100 candidates are scored properly: query words that match the
   candidate's address or town are set aside as "where", the rest are compared with the
   name by `token_set_ratio`/`token_sort_ratio`, and the "where" words and the postcode add
   bonuses. Scores below a threshold are dropped, so nonsense returns nothing.

The index is immutable after `build` and holds no per-query state, so one instance can be
shared by every conversation (and thread) in a process.
"""

from __future__ import annotations

import bisect
import heapq
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from rapidfuzz import fuzz, process

from bot.directory.service_types import matches_service_type
from bot.directory.text import (
    CHAT_WORDS,
    FULL_POSTCODE,
    GENERIC_WORDS,
    OUTWARD_CODE,
    core_tokens,
    is_fuzzy_stop_word,
    normalise,
    normalise_postcode,
    outward_code,
)
from bot.ports import DirectoryLocation

#: A result must score at least this (0-100, before the service-type boost) to be offered.
MIN_SCORE = 72.0
#: A query of one word this short must match a word of a name exactly.
SHORT_WORD = 4
#: How many stage-1 candidates are scored in stage 2.
CANDIDATES = 100
#: Added to the ranking score of locations of the service type the person chose.
SERVICE_TYPE_BOOST = 6.0
#: Added per query word found in the candidate's address or local authority (at most two).
PLACE_BONUS = 4.0
#: Taken off, in proportion to their share of the typed letters, for query words found
#: neither in the candidate's name nor in its address ("Manchester Royal Infirmary" is not
#: "A F J Manchester").
UNMATCHED_PENALTY = 15.0
#: Scales the cost of typed words that only resemble the name's words (0-1 per letter).
MISSPELLING_PENALTY = 20.0
#: Taken off per generic word ("surgery", "dental") the candidate's name does not have.
GENERIC_MISS_PENALTY = 5.0
#: A match on the provider's name counts this much of a match on the location's name.
PROVIDER_FACTOR = 0.9
#: Postcode effects when the query also has words.
POSTCODE_MATCH_BONUS = 12.0
OUTWARD_MATCH_BONUS = 5.0
POSTCODE_MISMATCH_PENALTY = 10.0
#: Scores for a query that is only a postcode (full) or only an outward code ("OL1").
POSTCODE_ONLY_SCORE = 95.0
OUTWARD_ONLY_SCORE = 80.0
#: Word similarity (fuzz.ratio) needed to count a typed word as a vocabulary word.
WORD_CUTOFF_LONG = 80.0  # words of 5+ characters
WORD_CUTOFF_4 = 75.0  # 4-character words (one wrong letter); shorter words must be exact
PREFIX_MIN_LENGTH = 5
PREFIX_SIMILARITY = 85.0
PREFIX_MAX_WORDS = 50
#: Postings read per query in stage 1 beyond the rarest word (bounds the query time).
POSTINGS_BUDGET = 12_000
#: Weight of an address/town word relative to a name word when picking candidates.
PLACE_WEIGHT = 0.4


@dataclass(frozen=True, slots=True)
class DirectoryMatch:
    """One search result; `score` is 0-100 (higher is closer)."""

    location: DirectoryLocation
    score: float


@dataclass(frozen=True, slots=True)
class _Entry:
    """A location with everything a query needs precomputed."""

    location: DirectoryLocation
    #: Distinctive words of the name (and of "also known as"), each joined by spaces.
    names: tuple[str, ...]
    name_words: frozenset[str]
    #: The whole normalised name, stop words included (tie-breaks near-identical names).
    full_name: str
    place_words: frozenset[str]
    #: The town (last address part) and local authority, normalised, and their words.
    towns: tuple[str, ...]
    town_words: frozenset[str]
    #: Distinctive words of the provider's name when it differs from the location's.
    provider: str
    provider_words: frozenset[str]
    postcode: str
    outward: str


@dataclass(frozen=True, slots=True)
class _Query:
    words: tuple[str, ...]
    #: For each word: vocabulary word -> similarity (0-100).
    similar: tuple[dict[str, float], ...]
    similar_sets: tuple[frozenset[str], ...]
    #: The normalised query without its postcode, stop words kept (for tie-breaks).
    text: str
    #: Letters in `words` (to weigh words that fit nothing by their share of the query).
    letters: int
    postcode: str
    outward: str


class DirectoryIndex:
    """An immutable, in-memory search index over directory locations."""

    __slots__ = (
        "_by_length",
        "_entries",
        "_idf",
        "_name_postings",
        "_outward",
        "_place_postings",
        "_postcodes",
        "_sorted_vocab",
        "_towns",
    )

    def __init__(self, entries: Sequence[_Entry]) -> None:
        """Use `DirectoryIndex.build`; this stores precomputed entries and their postings."""
        self._entries: tuple[_Entry, ...] = tuple(entries)
        name_postings: defaultdict[str, list[int]] = defaultdict(list)
        place_postings: defaultdict[str, list[int]] = defaultdict(list)
        postcodes: defaultdict[str, list[int]] = defaultdict(list)
        outward: defaultdict[str, list[int]] = defaultdict(list)
        for position, entry in enumerate(self._entries):
            for word in entry.name_words:
                name_postings[word].append(position)
            for word in (entry.place_words | entry.provider_words) - entry.name_words:
                place_postings[word].append(position)
            if entry.postcode:
                postcodes[entry.postcode].append(position)
            if entry.outward:
                outward[entry.outward].append(position)
        self._name_postings = {word: tuple(ids) for word, ids in name_postings.items()}
        self._place_postings = {word: tuple(ids) for word, ids in place_postings.items()}
        self._postcodes = {code: tuple(ids) for code, ids in postcodes.items()}
        self._outward = {code: tuple(ids) for code, ids in outward.items()}
        total = max(len(self._entries), 1)
        vocabulary = set(self._name_postings) | set(self._place_postings)
        self._idf = {
            word: math.log(
                1.0
                + total
                / (len(self._name_postings.get(word, ())) + len(self._place_postings.get(word, ())))
            )
            for word in vocabulary
        }
        by_length: defaultdict[int, list[str]] = defaultdict(list)
        for word in vocabulary:
            by_length[len(word)].append(word)
        self._by_length = {length: tuple(sorted(words)) for length, words in by_length.items()}
        self._sorted_vocab = tuple(sorted(vocabulary))
        #: One-word towns and local authorities anywhere in the directory ("leeds").
        self._towns = frozenset(
            town for entry in self._entries for town in entry.towns if " " not in town
        )

    @classmethod
    def build(cls, locations: Iterable[DirectoryLocation]) -> DirectoryIndex:
        """Precompute normalised names, address words and postcodes for every location."""
        return cls([_entry(location) for location in locations])

    def __len__(self) -> int:
        return len(self._entries)

    def search(
        self, query: str, *, service_type: str | None = None, limit: int = 3
    ) -> list[DirectoryMatch]:
        """The best `limit` locations for free text (name, town, street and/or postcode).

        `service_type` (the bot's id, e.g. "care_home") lifts locations of that type above
        equally good matches of other types but never hides them. Returns [] for text that
        matches nothing well enough (nonsense, greetings, a single letter).
        """
        if limit <= 0:
            return []
        parsed = self._parse_query(query)
        if parsed is None:
            return []
        # One short word ("asdf", "test") is too little to forgive typos in: fuzzy matching
        # would find "ASD Services" or "West Hill". It must be a whole word of the name.
        exact_word = (
            parsed.words[0]
            if len(parsed.words) == 1
            and len(parsed.words[0]) <= SHORT_WORD
            and not (parsed.postcode or parsed.outward)
            else None
        )
        scored: list[tuple[float, float, _Entry]] = []
        for position in self._candidates(parsed):
            entry = self._entries[position]
            if exact_word is not None and exact_word not in entry.name_words | entry.provider_words:
                continue
            score = _score(parsed, entry, self._towns)
            if score < MIN_SCORE:
                continue
            rank = score
            if service_type and matches_service_type(service_type, entry.location.service_types):
                rank += SERVICE_TYPE_BOOST
            scored.append((rank, score, entry))
        best = heapq.nsmallest(
            limit,
            scored,
            key=lambda item: (-item[0], item[2].full_name, item[2].location.location_id),
        )
        return [
            DirectoryMatch(entry.location, round(min(score, 100.0), 1)) for _, score, entry in best
        ]

    # -- query parsing -------------------------------------------------------------------

    def _parse_query(self, query: str) -> _Query | None:
        text = normalise(query)
        if not text:
            return None
        postcode = outward = ""
        found = FULL_POSTCODE.search(text)
        if found:
            postcode = (found.group(1) + found.group(2)).upper()
            outward = found.group(1).upper()
            text = (text[: found.start()] + " " + text[found.end() :]).strip()
        words: list[str] = []
        for word in core_tokens(text):
            if word in CHAT_WORDS:
                continue  # "help", "thanks", "i dont know"
            if not postcode and not outward and OUTWARD_CODE.match(word):
                if word.upper() in self._outward:
                    outward = word.upper()
                    continue
            if word in words:
                continue
            if word not in self._idf and is_fuzzy_stop_word(word):
                continue  # "hospitl", "limted"
            words.append(word)
        if not postcode and not outward:
            if sum(len(word) for word in words) < 2:
                return None  # "", "a", an emoji
            if all(word in GENERIC_WORDS for word in words):
                return None  # "the dentist", "care home": says what, not which
        similar = tuple(self._similar_words(word) for word in words)
        return _Query(
            words=tuple(words),
            similar=similar,
            similar_sets=tuple(frozenset(found) for found in similar),
            text=text,
            letters=max(1, sum(len(word) for word in words)),
            postcode=postcode,
            outward=outward,
        )

    def _similar_words(self, word: str) -> dict[str, float]:
        """Vocabulary words close to a typed word, with their similarity."""
        if len(word) <= 3 or word.isdigit():
            return {word: 100.0} if word in self._idf else {}
        cutoff = WORD_CUTOFF_4 if len(word) == 4 else WORD_CUTOFF_LONG
        # fuzz.ratio >= c needs the other length within [n*c/(200-c), n*(200-c)/c].
        shortest = math.ceil(len(word) * cutoff / (200.0 - cutoff))
        longest = math.floor(len(word) * (200.0 - cutoff) / cutoff)
        found: dict[str, float] = {}
        for length in range(shortest, longest + 1):
            bucket = self._by_length.get(length)
            if not bucket:
                continue
            for match, similarity, _ in process.extract(
                word, bucket, scorer=fuzz.ratio, processor=None, score_cutoff=cutoff, limit=None
            ):
                found[match] = similarity
        if len(word) >= PREFIX_MIN_LENGTH:
            start = bisect.bisect_left(self._sorted_vocab, word)
            for match in self._sorted_vocab[start : start + PREFIX_MAX_WORDS]:
                if not match.startswith(word):
                    break
                found[match] = max(found.get(match, 0.0), PREFIX_SIMILARITY)
        return found

    # -- stage 1 -------------------------------------------------------------------------

    def _candidates(self, query: _Query) -> list[int]:
        """Positions of the locations worth scoring, best first by word rarity.

        Words are visited rarest first and very common ones ("care", "london") are skipped
        once `POSTINGS_BUDGET` postings have been read: they add little to the ranking and
        reading their postings is what would make a query slow on the full directory.
        """
        variants = sorted(
            (self._frequency(word), index, word, similarity)
            for index, similar in enumerate(query.similar)
            for word, similarity in similar.items()
        )
        best: list[dict[int, float]] = [{} for _ in query.words]
        visited = 0
        for frequency, index, word, similarity in variants:
            if visited and visited + frequency > POSTINGS_BUDGET:
                continue
            visited += frequency
            found = best[index]
            weight = similarity * self._idf[word]
            for position in self._name_postings.get(word, ()):
                if found.get(position, 0.0) < weight:
                    found[position] = weight
            place_weight = weight * PLACE_WEIGHT
            for position in self._place_postings.get(word, ()):
                if found.get(position, 0.0) < place_weight:
                    found[position] = place_weight
        totals: defaultdict[int, float] = defaultdict(float)
        for found in best:
            for position, weight in found.items():
                totals[position] += weight
        chosen = heapq.nlargest(CANDIDATES, totals.items(), key=lambda item: item[1])
        positions = [position for position, _ in chosen]
        if query.postcode:
            positions.extend(self._postcodes.get(query.postcode, ()))
        if query.outward and (not query.words or not query.postcode):
            positions.extend(self._outward.get(query.outward, ()))
        return list(dict.fromkeys(positions))

    def _frequency(self, word: str) -> int:
        return len(self._name_postings.get(word, ())) + len(self._place_postings.get(word, ()))


# -- stage 2 -----------------------------------------------------------------------------


def _score(query: _Query, entry: _Entry, towns: frozenset[str]) -> float:
    """0-100ish: name similarity, plus address words, plus postcode."""
    text_score = 0.0
    if query.words:
        town = entry.town_words | towns
        text_score = _fit(
            query,
            entry.names,
            entry.name_words,
            entry.place_words | entry.provider_words,
            town,
        )
        if entry.provider and _touches(query, entry.provider_words):
            # "North East Ambulance Service" names the provider, not the location.
            by_provider = _fit(
                query,
                (entry.provider,),
                entry.provider_words,
                entry.place_words | entry.name_words,
                town,
            )
            text_score = max(text_score, PROVIDER_FACTOR * by_provider)

    if not (query.postcode or query.outward):
        return text_score
    full_match = bool(query.postcode) and entry.postcode == query.postcode
    outward_match = bool(query.outward) and entry.outward == query.outward
    if not query.words:
        if full_match:
            return POSTCODE_ONLY_SCORE
        return OUTWARD_ONLY_SCORE if outward_match else 0.0
    if full_match:
        return max(
            text_score + POSTCODE_MATCH_BONUS, POSTCODE_ONLY_SCORE - 15.0 + 0.15 * text_score
        )
    if outward_match:
        return text_score + OUTWARD_MATCH_BONUS
    return text_score - POSTCODE_MISMATCH_PENALTY


def _touches(query: _Query, words: frozenset[str]) -> bool:
    return any(
        word in words or not similar.isdisjoint(words)
        for word, similar in zip(query.words, query.similar_sets, strict=True)
    )


def _fit(
    query: _Query,
    names: tuple[str, ...],
    name_words: frozenset[str],
    context: frozenset[str],
    town: frozenset[str],
) -> float:
    """How well the query's words fit one way of naming the location.

    Words found in `name_words` are compared with the names by rapidfuzz; words found only
    in `context` (address, town, the other name) add a bonus; generic words that fit
    nothing ("surgery") cost a little; other words that fit nothing cost in proportion to
    their share of the query. A name matched only through its town or generic words ("Leeds"
    in "22 Regent Street Leeds", "dental") is no evidence of which service is meant, unless
    those words are the whole name ("Oldham Medical Services").
    """
    typed: list[str] = []
    context_hits = generic_misses = unmatched_letters = 0
    distinctive = False
    matched: set[str] = set()
    misspelt = 0.0
    for word, similar, scores in zip(query.words, query.similar_sets, query.similar, strict=True):
        if word in name_words or not similar.isdisjoint(name_words):
            # Compare in the name's own spelling ("hospitl" -> "hospital") so that rapidfuzz's
            # token_set_ratio sees the common word; the misspelling costs a little below.
            spelt = (
                word if word in name_words else max(name_words & similar, key=scores.__getitem__)
            )
            typed.append(spelt)
            matched.add(spelt)
            misspelt += len(word) * (100.0 - scores.get(spelt, 100.0)) / 100.0
            # A known word is judged as itself; a misspelt one by what it resembles.
            is_town = word in town if word in similar else not similar.isdisjoint(town)
            if word not in GENERIC_WORDS and not is_town:
                distinctive = True
        elif word in context or not similar.isdisjoint(context):
            context_hits += 1
        elif word in GENERIC_WORDS:
            generic_misses += 1
        else:
            typed.append(word)  # probably part of the name, misremembered
            unmatched_letters += len(word)
    if not typed or not (
        distinctive or unmatched_letters or any(set(name.split()) <= matched for name in names)
    ):
        # Only a town and generic words ("leeds dental"), and not the whole name: too vague.
        return 50.0 + PLACE_BONUS * min(context_hits, 2)
    if unmatched_letters == sum(len(word) for word in typed):
        return 0.0  # none of the typed words is in this name
    text = " ".join(typed)
    name_score = max(
        0.75 * fuzz.token_set_ratio(text, name) + 0.25 * fuzz.token_sort_ratio(text, name)
        for name in names
    )
    return (
        name_score
        + PLACE_BONUS * min(context_hits, 2)
        + 2.0 * fuzz.ratio(query.text, names[0]) / 100.0
        - UNMATCHED_PENALTY * unmatched_letters / query.letters
        - MISSPELLING_PENALTY * misspelt / query.letters
        - GENERIC_MISS_PENALTY * generic_misses
    )


def _entry(location: DirectoryLocation) -> _Entry:
    full_name = normalise(location.name)
    names = [_core_text(full_name)]
    if location.also_known_as:
        alias = _core_text(normalise(location.also_known_as))
        if alias and alias not in names:
            names.append(alias)
    names = [name for name in names if name] or [full_name or location.location_id.lower()]
    place = normalise(f"{location.address} {location.local_authority}")
    towns = tuple(
        text
        for text in (
            normalise(location.address.rsplit(",", 1)[-1]) if location.address else "",
            normalise(location.local_authority),
        )
        if text
    )
    postcode = normalise_postcode(location.postcode)
    provider = _core_text(normalise(location.provider_name))
    if provider in names:
        provider = ""
    return _Entry(
        location=location,
        names=tuple(names),
        name_words=frozenset(word for name in names for word in name.split()),
        full_name=full_name,
        place_words=frozenset(core_tokens(place)),
        towns=towns,
        town_words=frozenset(word for town in towns for word in core_tokens(town)),
        provider=provider,
        provider_words=frozenset(provider.split()),
        postcode=postcode,
        outward=outward_code(postcode),
    )


def _core_text(normalised: str) -> str:
    """Distinctive words of a name; the whole name if it is made only of stop words."""
    return " ".join(core_tokens(normalised)) or normalised
