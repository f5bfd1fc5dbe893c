"""Stand-ins for services that cannot run here, each checking requests as the real API documents."""
