"""Stateful fakes of the clouds' APIs (moto for AWS, our own for Compute Engine and Azure Resource
Manager). They know nothing of the operator; the operator and Packer reach them at the clouds'
real endpoints through the TLS edge."""
