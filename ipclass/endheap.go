package ipclass

// endHeap is a min-heap (container/heap) of entries by their end: the client bans and the
// wider networks' detections, each table evicting the entry that ends first when full.
type endHeap[T endOrdered] []T

// endOrdered is an entry of an endHeap: when it ends, and where it stands in the heap (kept
// by the heap so heap.Fix and heap.Remove can find it).
type endOrdered interface {
	end() int64
	setIndex(i int)
}

func (h endHeap[T]) Len() int           { return len(h) }
func (h endHeap[T]) Less(i, j int) bool { return h[i].end() < h[j].end() }
func (h endHeap[T]) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].setIndex(i)
	h[j].setIndex(j)
}

func (h *endHeap[T]) Push(x any) {
	e := x.(T)
	e.setIndex(len(*h))
	*h = append(*h, e)
}

func (h *endHeap[T]) Pop() any {
	old := *h
	n := len(old) - 1
	e := old[n]
	var zero T
	old[n] = zero // the popped entry is no longer kept alive by the backing array
	*h = old[:n]
	return e
}
