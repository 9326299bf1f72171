"""Local infrastructure for the tests and the demo: a real control plane, a pod executor,
moto and cloud fakes. It is its own distribution (goldenimage-dev): nothing in the operator's
package imports it, and it never ships in the wheel or the runner image."""
