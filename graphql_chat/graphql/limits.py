"""What a GraphQL document may cost, decided before anything runs, in time linear in its size.

One walk over each operation measures:

- **depth**: the deepest field under the operation (introspection subtrees excepted: the
  standard introspection query is deep; its cost is counted instead);
- **fields**: the fields it selects once fragments are expanded (a fragment spread twice
  counts twice);
- **aliases**: the aliased fields it selects, expanded the same way;
- **cost**: each field costs 1 plus its selection's cost, times how many items the field can
  return: a paginated field multiplies by its `first` or `last` (a literal, capped by the
  page maximum; a variable or no argument count as the maximum or the default page size), an
  introspection list by 10.

Each fragment is measured once and remembered, so a document whose fragments spread each
other exponentially (`F0 { ...F1 ...F1 } F1 { ...F2 ...F2 } ...`) costs its size to measure,
and is refused for the count it would expand to. Counts stop a thousand times above their
limits, so the numbers stay small.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
)

INTROSPECTION_LISTS = frozenset(
    {"types", "fields", "args", "inputFields", "interfaces", "possibleTypes", "enumValues"}
    | {"directives"}
)
INTROSPECTION_LIST_SIZE = 10


@dataclass(frozen=True, slots=True)
class Limits:
    max_depth: int
    max_fields: int
    max_aliases: int
    max_cost: int
    default_page_size: int
    max_page_size: int


@dataclass(frozen=True, slots=True)
class Measure:
    depth: int = 0
    fields: int = 0
    aliases: int = 0
    cost: int = 0


_NOTHING = Measure()


class _Measurer:
    def __init__(self, document: DocumentNode, limits: Limits, paged: Collection[str]) -> None:
        self.limits = limits
        self.paged = paged
        self.fragments = {
            d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
        }
        self.measured: dict[str, Measure] = {}
        self.cap = _cap(limits)

    def selections(self, node: SelectionSetNode | None, introspecting: bool) -> Measure:
        if node is None:
            return _NOTHING
        depth = fields = aliases = cost = 0
        for selection in node.selections:
            if isinstance(selection, FieldNode):
                name = selection.name.value
                inner = introspecting or name.startswith("__")
                below = self.selections(selection.selection_set, inner)
                times = self.multiplier(selection, inner)
                depth = max(depth, 0 if inner else 1 + below.depth)
                fields += 1 + below.fields
                aliases += (selection.alias is not None) + below.aliases
                cost += 1 + times * below.cost
            elif isinstance(selection, FragmentSpreadNode):
                below = self.fragment(selection.name.value, introspecting)
                depth = max(depth, below.depth)
                fields, aliases = fields + below.fields, aliases + below.aliases
                cost += below.cost
            elif isinstance(selection, InlineFragmentNode):
                below = self.selections(selection.selection_set, introspecting)
                depth = max(depth, below.depth)
                fields, aliases = fields + below.fields, aliases + below.aliases
                cost += below.cost
            fields, aliases, cost = (
                min(fields, self.cap),
                min(aliases, self.cap),
                min(cost, self.cap),
            )
        return Measure(depth, fields, aliases, cost)

    def fragment(self, name: str, introspecting: bool) -> Measure:
        key = f"{name}:{introspecting}"
        found = self.measured.get(key)
        if found is not None:
            return found
        definition = self.fragments.get(name)
        # Unknown fragments and cycles are validation errors of their own: measured as empty.
        self.measured[key] = _NOTHING
        if definition is None:
            return _NOTHING
        found = self.selections(definition.selection_set, introspecting)
        self.measured[key] = found
        return found

    def multiplier(self, field: FieldNode, introspecting: bool) -> int:
        name = field.name.value
        if introspecting:
            return INTROSPECTION_LIST_SIZE if name in INTROSPECTION_LISTS else 1
        if name not in self.paged:
            return 1
        for argument in field.arguments or ():
            if argument.name.value in ("first", "last"):
                if isinstance(argument.value, IntValueNode):
                    return max(1, min(int(argument.value.value), self.limits.max_page_size))
                return self.limits.max_page_size
        return self.limits.default_page_size


def measure(
    document: DocumentNode, limits: Limits, paged: Collection[str]
) -> dict[str | None, Measure]:
    """Each operation's measure, by name (`None` for an anonymous one)."""
    measurer = _Measurer(document, limits, paged)
    return {
        (d.name.value if d.name else None): measurer.selections(d.selection_set, False)
        for d in document.definitions
        if isinstance(d, OperationDefinitionNode)
    }


def check(document: DocumentNode, limits: Limits, paged: Collection[str]) -> list[GraphQLError]:
    """One error per limit an operation goes over, naming the limit and the value."""
    errors: list[GraphQLError] = []
    cap = _cap(limits)
    for operation, found in measure(document, limits, paged).items():
        where = f"operation {operation}" if operation else "the operation"
        for what, value, limit, setting in (
            ("depth", found.depth, limits.max_depth, "MAX_QUERY_DEPTH"),
            ("fields", found.fields, limits.max_fields, "MAX_QUERY_FIELDS"),
            ("aliases", found.aliases, limits.max_aliases, "MAX_QUERY_ALIASES"),
            ("cost", found.cost, limits.max_cost, "MAX_QUERY_COST"),
        ):
            if value > limit:
                shown = f"more than {cap - 1:,}" if value >= cap else f"{value:,}"
                errors.append(
                    GraphQLError(
                        f"{where} is over the {what} limit: {shown} (at most {limit:,}, {setting})",
                        extensions={"code": "GRAPHQL_VALIDATION_FAILED", "limit": setting},
                    )
                )
    return errors


def _cap(limits: Limits) -> int:
    """Counts stop here: exact well past every limit, bounded however a document nests."""
    return 1000 * max(limits.max_fields, limits.max_aliases, limits.max_cost) + 1
