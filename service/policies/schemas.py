"""API models for the competency catalogue and policies."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import BaseModel, Field


class CompetencyBase(BaseModel):
    name: str = Field(max_length=300)
    description: str = ""
    level_descriptions: dict[str, str] = Field(
        default_factory=dict,
        description="What each level means: keys beginning, intermediate, advanced.",
    )
    framework_name: str = Field(default="", max_length=200, description="e.g. ESCO")
    framework_url: str = Field(default="", max_length=1000)
    framework_code: str = Field(default="", max_length=200)


class CompetencyCreate(CompetencyBase):
    key: str = Field(max_length=100, description="The id used in policies and evidence.")


class CompetencyUpdate(BaseModel):
    name: str | None = Field(default=None, max_length=300)
    description: str | None = None
    level_descriptions: dict[str, str] | None = None
    framework_name: str | None = Field(default=None, max_length=200)
    framework_url: str | None = Field(default=None, max_length=1000)
    framework_code: str | None = Field(default=None, max_length=200)


class LevelTemplateIn(BaseModel):
    title: str = Field(default="", max_length=300)
    description: str = ""
    validity_days: int | None = Field(default=None, description="None: does not expire.")
    workload_hours: float | None = None
    ects_credits: float | None = None
    eqf_level: int | None = Field(
        default=None, description="European Qualifications Framework, 1-8."
    )
    iscedf_code: str = Field(default="", max_length=10, description="ISCED-F 2013 field code.")
    language: str = Field(default="en", max_length=35)


class LevelTemplatePublic(LevelTemplateIn):
    level: str


class CompetencyPublic(CompetencyCreate):
    id: int
    levels: list[LevelTemplatePublic] = []


class InstitutionPolicyIn(BaseModel):
    defaults: dict[str, Any] = Field(description="A complete policy: the starting point.")
    bounds: dict[str, Any] = Field(default_factory=dict, description="What instructors may change.")
    note: str = Field(default="", max_length=1000)


class LayerIn(BaseModel):
    document: dict[str, Any] = Field(description="Any subset of the policy fields.")
    note: str = Field(default="", max_length=1000)


class PolicyVersionPublic(BaseModel):
    scope: str
    version: int
    document: dict[str, Any]
    bounds: dict[str, Any] | None = None
    author: str
    note: str
    created_at: dt.datetime


class EffectivePolicyPublic(BaseModel):
    competency: str
    version: int
    policy_hash: str
    layers: dict[str, int]
    policy: dict[str, Any]


class CoursePolicies(BaseModel):
    course: PolicyVersionPublic | None
    competencies: dict[str, PolicyVersionPublic | None]
