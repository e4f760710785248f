from django.apps import AppConfig


class OrchestratorConfig(AppConfig):
    """The project package as an app: home of `manage.py runlocal` and the platform tasks."""

    name = "orchestrator"
    verbose_name = "Orchestrator platform"
