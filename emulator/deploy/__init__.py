"""Deploying a run across machines: Kubernetes manifests (`k8s`), each machine's size (`sizing`)."""
