"""Machines that really boot, in the test run's own lab network; see `lab`, `images`,
`gateway` and `hypervisor`."""
