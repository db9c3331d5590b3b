import sys, collections
# inclusive/own percentages within stacks containing a marker frame (default Bench.forward)
path = sys.argv[1]; marker = sys.argv[2] if len(sys.argv) > 2 else 'Bench.forward'
own = collections.Counter(); incl = collections.Counter(); total = 0
for line in open(path):
    stack, _, n = line.rstrip().rpartition(' ')
    n = int(n)
    frames = stack.split(';')
    names = []
    for f in frames:
        fn = f.split(' (')[0]; file = f.split(' (')[-1].split(':')[0].split('/')[-1] if '(' in f else ''
        names.append(f"{file}:{fn}")
    if marker not in stack: continue
    total += n
    own[names[-1]] += n
    for nm in set(names): incl[nm] += n
print("samples", total)
N = int(sys.argv[3]) if len(sys.argv) > 3 else 70
print("== inclusive =="); [print(f"{v/total*100:6.1f}% {k}") for k, v in incl.most_common(N)]
print("== own =="); [print(f"{v/total*100:6.1f}% {k}") for k, v in own.most_common(45)]
