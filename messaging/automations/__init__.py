"""Automations: outside systems (shops, help desks, HR tools) trigger template messages through
signed endpoints, by rules staff set up in the admin."""
