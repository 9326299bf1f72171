"""Pure decisions: plan(spec, status, observed, now) -> new status and actions. No I/O, no kopf,
no clock: the caller gathers what is observed and carries out the actions."""
