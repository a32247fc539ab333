"""attnunet's models inside other frameworks.

:mod:`attnunet.integrations.nnunet`: the U-Net families as nnU-Net v2 networks, built from
nnU-Net's plans. Each integration imports its framework only where it must, so importing
it needs only attnunet's own dependencies.
"""
