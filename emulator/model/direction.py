"""The words that name a link's directions: `both`, `a_to_b`, `b_to_a`, or an end node.

A link runs between its `a` and `b` ends; `a_to_b` carries what `a` sends.
A node's name means the direction that node sends into the link (`aktau`
on aktau-sumgait is `a_to_b`), so a user never has to remember which end
is which. Every part that takes such a word (the engine, the scenario
loader, `caspian set/cut/capture`) resolves it here. Pure.
"""

from __future__ import annotations

from emulator.errors import InputError

#: the two directions, in the engine's order (direction k of link n is slot 2n + k)
DIRECTIONS = ("a_to_b", "b_to_a")
BOTH = "both"
#: the words that mean the same on every link
WORDS = (BOTH, *DIRECTIONS)


class UnknownDirection(InputError):
    """A direction word that is none of `both`, `a_to_b`, `b_to_a` or the link's end nodes."""

    def __init__(self, link: str, word: str, choices: tuple[str, ...]) -> None:
        super().__init__(f"link {link} has no direction {word!r}", fix=f"use {', '.join(choices[:-1])} or {choices[-1]}")
        self.word = word
        #: what would have been understood, for a caller's own message
        self.choices = choices


def link_directions(word: str, link: str, a_node: str, b_node: str) -> tuple[str, ...]:
    """The directions (`a_to_b`, `b_to_a`, or both) that `word` names on `link` from `a_node` to `b_node`.

    Raises UnknownDirection (an InputError naming the choices).
    """
    if word == BOTH:
        return DIRECTIONS
    if word in DIRECTIONS:
        return (word,)
    if word == a_node:
        return (DIRECTIONS[0],)
    if word == b_node:
        return (DIRECTIONS[1],)
    raise UnknownDirection(link, word, (*WORDS, a_node, b_node))


def each_direction(word: str) -> tuple[str, ...]:
    """`word` as one word per direction, where the ends are not known: `both` is `a_to_b` and `b_to_a`.

    Any other word (one direction, or an end node's name) stays as it is, for
    the engine to resolve with `link_directions`.
    """
    return DIRECTIONS if word == BOTH else (word,)


def normalise(directions: tuple[str, ...]) -> str:
    """`both`, `a_to_b` or `b_to_a` for what `link_directions` returned."""
    return BOTH if len(directions) == len(DIRECTIONS) else directions[0]
