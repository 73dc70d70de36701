package ipclass

import "net/netip"

// Classifier gives every client address its class: trusted prefixes first, then static
// suspicious prefixes, then the detector's active detections; anything else is Default.
// The zero value classifies everyone as Default.
type Classifier struct {
	Trusted    *PrefixSet
	Suspicious *PrefixSet
	// Detector is nil when detection is off.
	Detector *Detector
}

// Class classifies a. It allocates nothing.
func (c *Classifier) Class(a netip.Addr) Class {
	switch {
	case c.Trusted.Contains(a):
		return Trusted
	case c.Suspicious.Contains(a):
		return Suspicious
	case c.Detector != nil && c.Detector.Suspicious(a.Unmap()):
		return Suspicious
	}
	return Default
}

// Signal reports a signal for a, with its key (Detector.SignalKey), to the detector. Trusted
// clients are never scored or reclassified; statically suspicious ones need no detection.
func (c *Classifier) Signal(a netip.Addr, sig Signal, key string) (Detection, bool) {
	if c.Detector == nil || !a.IsValid() || c.Trusted.Contains(a) || c.Suspicious.Contains(a) {
		return Detection{}, false
	}
	return c.Detector.SignalKey(a, sig, key)
}
