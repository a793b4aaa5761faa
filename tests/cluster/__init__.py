"""The multi-node test cluster: real sshd hosts in network namespaces on this machine."""
