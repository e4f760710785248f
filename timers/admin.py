from django.contrib import admin

from timers.models import Timer


@admin.register(Timer)
class TimerAdmin(admin.ModelAdmin):
    list_display = ("key", "kind", "state", "due_at", "fired_at", "failures")
    list_filter = ("state", "kind")
    search_fields = ("key",)
    readonly_fields = ("token",)
