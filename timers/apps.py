from django.apps import AppConfig


class TimersConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "timers"
    verbose_name = "Durable timers"
