"""The file and what it stores: the graph, the conv layers, where each weight comes from, its float32
kernels, the metadata. The lowest room: it imports only the utilities (errors, outdir, progress).
"""
