"""Current medicines that matter to an anticoagulant: the vocabulary of reference §5a, as a plain table.

Pure Python, no Django (like ``anticoag.rules``, which reads it). Every row is **[verify]** in the reference
("all [verify] against the EHRA 2021 tables and the labels"), so every row carries ``verified=False``. A
clinic adds a medicine by adding a row here (the reference calls the list "clinic-extendable"; there is no
settings-driven extension yet).

Effects are coded per agent so the rules can act on them:

* ``not_eligible`` — the agent must not be proposed (strong CYP3A4/P-gp inducers with any DOAC);
* ``reduce_or_avoid`` — the option stays, with a caution (P-gp inhibitors with dabigatran);
* ``bleeding_risk`` — the option stays, with a caution;
* ``inr_falls`` / ``inr_rises`` / ``inr_may_rise`` — warfarin: the INR moves; test it after a start or stop;
* ``estrogen`` — see the ``estrogen_avoid`` warning;
* ``none`` — nothing relevant (said explicitly, e.g. levetiracetam, so "not in the table" never reads as "safe").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

#: The agents a §5a effect is stated for.
DOACS: tuple[str, ...] = ("dabigatran", "rivaroxaban", "apixaban")
AGENTS: tuple[str, ...] = (*DOACS, "warfarin")

NOT_ELIGIBLE, REDUCE_OR_AVOID, BLEEDING_RISK = "not_eligible", "reduce_or_avoid", "bleeding_risk"
INR_FALLS, INR_RISES, INR_MAY_RISE, ESTROGEN, NONE = "inr_falls", "inr_rises", "inr_may_rise", "estrogen", "none"
EFFECT_KINDS: tuple[str, ...] = (
    NOT_ELIGIBLE,
    REDUCE_OR_AVOID,
    BLEEDING_RISK,
    INR_FALLS,
    INR_RISES,
    INR_MAY_RISE,
    ESTROGEN,
    NONE,
)
#: Effects on warfarin that move the INR: a start or a stop calls for an INR test (§5 ``warfarin_interaction``).
INR_MOVING: frozenset[str] = frozenset({INR_FALLS, INR_RISES, INR_MAY_RISE})

#: The source of every §5a row (the reference names the EHRA 2021 interaction tables and the labels).
MEDICINES_SOURCE = "EHRA (Steffel et al., Europace 2021); EU label; US label"


@dataclass(frozen=True)
class Effect:
    """What one medicine does with one anticoagulant."""

    kind: str
    text: str


@dataclass(frozen=True)
class Medicine:
    """One row of the §5a vocabulary: a medicine (lower-case generic name as code), its class, and its effect
    per agent (``dabigatran``, ``rivaroxaban``, ``apixaban``, ``warfarin``)."""

    code: str
    name: str
    drug_class: str
    effects: Mapping[str, Effect]
    source: str = MEDICINES_SOURCE
    verified: bool = False
    aliases: tuple[str, ...] = field(default=())

    def effect_on(self, agent: str) -> Effect:
        return self.effects.get(agent, Effect(NONE, "none"))

    @property
    def strong_inducer(self) -> bool:
        """Not eligible with a DOAC (reference §3: SECRET exclusion; EHRA)."""
        return any(self.effect_on(doac).kind == NOT_ELIGIBLE for doac in DOACS)

    @property
    def moves_inr(self) -> bool:
        return self.effect_on("warfarin").kind in INR_MOVING

    def as_dict(self) -> dict[str, object]:
        return {
            "code": self.code,
            "name": self.name,
            "class": self.drug_class,
            "effects": {agent: {"kind": e.kind, "text": e.text} for agent, e in self.effects.items()},
            "source": self.source,
            "verified": self.verified,
        }


def _doacs(kind: str, text: str, **per_agent: Effect) -> dict[str, Effect]:
    effects = {doac: Effect(kind, text) for doac in DOACS}
    effects.update(per_agent)
    return effects


_INDUCER = {
    **_doacs(NOT_ELIGIBLE, "not eligible (lower DOAC levels)"),
    "warfarin": Effect(INR_FALLS, "INR falls: dose up, test more often"),
}
_NO_INTERACTION = {**_doacs(NONE, "none"), "warfarin": Effect(NONE, "none")}
_PGP = {
    **_doacs(NONE, "none"),
    "dabigatran": Effect(REDUCE_OR_AVOID, "reduce the dose or avoid"),
    "warfarin": Effect(NONE, "none"),
}
_BLEEDING = {**_doacs(BLEEDING_RISK, "bleeding risk"), "warfarin": Effect(BLEEDING_RISK, "bleeding risk")}
_ESTROGEN = {**_doacs(ESTROGEN, "see estrogen_avoid"), "warfarin": Effect(ESTROGEN, "see estrogen_avoid")}

#: Reference §5a, row by row, in the reference's order. Codes are the lower-case generic names (stable).
# fmt: off
MEDICINES: dict[str, Medicine] = {
    m.code: m
    for m in (
        # strong CYP3A4/P-gp inducers: DOAC not eligible; warfarin INR falls
        Medicine("carbamazepine", "Carbamazepine", "strong CYP3A4/P-gp inducer", _INDUCER),
        Medicine("phenytoin", "Phenytoin", "strong CYP3A4/P-gp inducer", _INDUCER),
        Medicine("phenobarbital", "Phenobarbital", "strong CYP3A4/P-gp inducer", _INDUCER),
        Medicine("rifampicin", "Rifampicin", "strong CYP3A4/P-gp inducer", _INDUCER, aliases=("rifampin",)),
        # antiseizure drugs without a relevant interaction
        Medicine("levetiracetam", "Levetiracetam", "antiseizure, no relevant interaction", _NO_INTERACTION),
        Medicine("lacosamide", "Lacosamide", "antiseizure, no relevant interaction", _NO_INTERACTION),
        # valproate: DOAC none known [verify]; warfarin INR may rise
        Medicine("valproate", "Valproate", "valproate",
                 {**_doacs(NONE, "none known [verify]"), "warfarin": Effect(INR_MAY_RISE, "INR may rise; bleeding risk")},
                 aliases=("valproic_acid", "sodium_valproate")),
        # P-gp inhibitors: dabigatran reduce or avoid; amiodarone raises the INR
        Medicine("verapamil", "Verapamil", "P-gp inhibitor", _PGP),
        Medicine("amiodarone", "Amiodarone", "P-gp inhibitor",
                 {**_PGP, "warfarin": Effect(INR_RISES, "INR rises")}),
        Medicine("dronedarone", "Dronedarone", "P-gp inhibitor", _PGP),
        Medicine("ketoconazole", "Ketoconazole", "P-gp inhibitor", _PGP),
        Medicine("itraconazole", "Itraconazole", "P-gp inhibitor", _PGP),
        Medicine("clarithromycin", "Clarithromycin", "P-gp inhibitor", _PGP),
        # antibiotics that raise the INR: no DOAC effect stated ("—")
        Medicine("metronidazole", "Metronidazole", "antibiotic that raises the INR",
                 {**_doacs(NONE, "none stated"), "warfarin": Effect(INR_RISES, "INR rises: test in 3-7 days")}),
        Medicine("co_trimoxazole", "Co-trimoxazole", "antibiotic that raises the INR",
                 {**_doacs(NONE, "none stated"), "warfarin": Effect(INR_RISES, "INR rises: test in 3-7 days")},
                 aliases=("co-trimoxazole", "cotrimoxazole", "trimethoprim_sulfamethoxazole")),
        Medicine("fluconazole", "Fluconazole", "antibiotic that raises the INR",
                 {**_doacs(NONE, "none stated"), "warfarin": Effect(INR_RISES, "INR rises: test in 3-7 days")}),
        # antiplatelets, NSAIDs: bleeding risk (CHEST2012: avoid with warfarin unless indicated)
        Medicine("aspirin", "Aspirin", "antiplatelet", _BLEEDING, source=MEDICINES_SOURCE + "; CHEST2012"),
        Medicine("clopidogrel", "Clopidogrel", "antiplatelet", _BLEEDING, source=MEDICINES_SOURCE + "; CHEST2012"),
        Medicine("ibuprofen", "Ibuprofen", "NSAID", _BLEEDING, source=MEDICINES_SOURCE + "; CHEST2012"),
        Medicine("naproxen", "Naproxen", "NSAID", _BLEEDING, source=MEDICINES_SOURCE + "; CHEST2012"),
        # SSRIs / SNRIs: bleeding risk
        Medicine("sertraline", "Sertraline", "SSRI", _BLEEDING),
        Medicine("venlafaxine", "Venlafaxine", "SNRI", _BLEEDING),
        # estrogen: see estrogen_avoid (ESO2017)
        Medicine("combined_contraceptive", "Combined (estrogen-containing) contraceptive", "estrogen", _ESTROGEN,
                 source="ESO2017", aliases=("combined-contraceptive", "combined_oral_contraceptive")),
        Medicine("hrt", "Hormone replacement therapy (estrogen)", "estrogen", _ESTROGEN,
                 source="ESO2017", aliases=("hormone_replacement_therapy",)),
    )
}
# fmt: on


def resolve(code: str, table: Mapping[str, Medicine] | None = None) -> Medicine | None:
    """The row for a code or one of its aliases (case-insensitive), or None."""
    table = MEDICINES if table is None else table
    wanted = code.strip().lower()
    if wanted in table:
        return table[wanted]
    for medicine in table.values():
        if wanted in medicine.aliases:
            return medicine
    return None


#: (code, name) pairs for form choices.
MEDICINE_CHOICES: list[tuple[str, str]] = [(m.code, m.name) for m in MEDICINES.values()]
