"""A real Kubernetes control plane on loopback for the e2e suite (see hack/controlplane/README.md)."""
