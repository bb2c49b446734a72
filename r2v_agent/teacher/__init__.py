"""Teachers: who acts when the router escalates."""

from __future__ import annotations

from r2v_agent.teacher.base import CallCost, PriceTable, Teacher, TeacherReply
from r2v_agent.teacher.openai_http import OpenAITeacher
from r2v_agent.teacher.oracle import OracleTeacher

__all__ = [
    "Teacher",
    "TeacherReply",
    "CallCost",
    "PriceTable",
    "OracleTeacher",
    "OpenAITeacher",
    "TransformersTeacher",
]


def __getattr__(name: str):  # the local teacher imports torch and transformers
    if name == "TransformersTeacher":
        from r2v_agent.teacher.local import TransformersTeacher

        return TransformersTeacher
    raise AttributeError(name)
