"""Plain torch.nn networks. No Lightning in here.

Every generator is called as `G(z, labels=None)` and every discriminator as
`D(x, labels=None)`; conditional nets use the labels, the others ignore them.
"""
