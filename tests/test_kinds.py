"""The communication kinds are defined once (the event contract) and everything keyed by kind covers them."""

from __future__ import annotations

import typing
from importlib import resources

from forewarn.engine import render
from forewarn.events.models import COMMUNICATION_KINDS, CommunicationSent
from forewarn.policy.schema import Kind


def test_one_list_of_kinds() -> None:
    assert typing.get_args(CommunicationSent.model_fields["kind"].annotation) == COMMUNICATION_KINDS
    assert typing.get_args(Kind) == COMMUNICATION_KINDS
    assert render.KINDS == COMMUNICATION_KINDS


def test_every_kind_has_a_subject_line_details_and_templates() -> None:
    assert set(render._SUBJECT_PREFIX) == set(COMMUNICATION_KINDS)
    assert set(render._DETAILS) == set(COMMUNICATION_KINDS)
    mail = resources.files("forewarn.templates").joinpath("mail")
    for kind in COMMUNICATION_KINDS:
        assert mail.joinpath(f"{kind}.txt.j2").is_file() and mail.joinpath(f"{kind}.html.j2").is_file(), kind
