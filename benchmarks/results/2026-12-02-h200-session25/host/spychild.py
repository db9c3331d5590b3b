import sys, collections
# for a function F: breakdown of samples by F's direct child (or 'self')
path, marker, fn = sys.argv[1], sys.argv[2], sys.argv[3]
child = collections.Counter(); total = 0; alls = 0
for line in open(path):
    stack, _, n = line.rstrip().rpartition(' ')
    n = int(n)
    if marker not in stack: continue
    alls += n
    frames = [f.split(' (')[0] for f in stack.split(';')]
    idx = [i for i, f in enumerate(frames) if f == fn]
    if not idx: continue
    i = idx[0]  # outermost
    total += n
    child[frames[i + 1] if i + 1 < len(frames) else 'self'] += n
print(f"{fn}: {total} of {alls} samples ({total/alls*100:.1f}%)")
for k, v in child.most_common(25): print(f"  {v/alls*100:6.1f}% {k}")
