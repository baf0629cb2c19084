"""Tasks: prompts, answer spaces and robust parsing for generation and downstream tasks."""

from tailorlm.tasks.base import TASKS, Task, get_task
from tailorlm.tasks.parsing import farthest_rating, parse_label, parse_ranking, parse_rating

__all__ = [
    "TASKS",
    "Task",
    "farthest_rating",
    "get_task",
    "parse_label",
    "parse_ranking",
    "parse_rating",
]
