package caddymodule

import (
	"context"
	"encoding/json"
	"fmt"
	"os"

	"github.com/caddyserver/caddy/v2"
	_ "github.com/caddyserver/caddy/v2/modules/filestorage" // the throwaway storage's module
	"github.com/caddyserver/certmagic"
)

// throwawayStorage points the configuration the check provisions at an empty temporary
// folder, whatever its own `storage` (and each PKI authority's) says. Provisioning writes
// there: with `local_certs` or `tls internal`, the PKI app creates the local CA's root and
// intermediate keys. A check in a Dockerfile would otherwise bake a CA key into the image, and
// one in ExecStartPre would create the CA before the server does. The configured storage
// modules are still loaded first, and one Caddy would refuse is returned as refused (with
// Caddy's message); they are never written to. restore removes the folder and gives CertMagic
// back its default storage, which caddy.Validate replaced.
func throwawayStorage(cfg *caddy.Config) (restore func(), refused *storageRefusal, err error) {
	if err := loadStorage(cfg.StorageRaw); err != nil {
		return nil, &storageRefusal{"storage", fmt.Errorf("loading storage module: %v", err)}, nil
	}
	if refused := dropAuthorityStorage(cfg); refused != nil {
		return nil, refused, nil
	}
	dir, err := os.MkdirTemp("", "caddy-hardening-check-")
	if err != nil {
		return nil, nil, err
	}
	cfg.StorageRaw, _ = json.Marshal(map[string]string{"module": "file_system", "root": dir})
	prev := certmagic.Default.Storage
	return func() {
		certmagic.Default.Storage = prev
		_ = os.RemoveAll(dir)
	}, nil, nil
}

// dropAuthorityStorage removes the `storage` of each authority of the PKI app (JSON only:
// apps.pki.certificate_authorities.<id>.storage), so the authority uses the throwaway global
// storage, after loading it like the global one.
func dropAuthorityStorage(cfg *caddy.Config) *storageRefusal {
	raw := cfg.AppsRaw["pki"]
	if raw == nil {
		return nil
	}
	var pki map[string]json.RawMessage
	if json.Unmarshal(raw, &pki) != nil {
		return nil // Caddy reports the malformed app when it provisions it
	}
	var cas map[string]map[string]json.RawMessage
	if json.Unmarshal(pki["certificate_authorities"], &cas) != nil {
		return nil
	}
	changed := false
	for _, id := range sortedKeys(cas) {
		ca := cas[id]
		if ca["storage"] == nil {
			continue
		}
		if err := loadStorage(ca["storage"]); err != nil {
			return &storageRefusal{"apps.pki.certificate_authorities." + id + ".storage",
				fmt.Errorf("loading pki app module: provision pki: provisioning CA '%s': loading storage module: %v", id, err)}
		}
		delete(ca, "storage")
		changed = true
	}
	if changed { // re-encoding what was just decoded cannot fail
		pki["certificate_authorities"], _ = json.Marshal(cas)
		cfg.AppsRaw["pki"], _ = json.Marshal(pki)
	}
	return nil
}

// storageRefusal is a storage module Caddy would refuse, and where it is in the JSON config.
type storageRefusal struct {
	at  string
	err error
}

// loadStorage loads and converts a storage module in a context of its own, as Caddy does at
// load, and cleans it up: its settings are checked, nothing is stored.
func loadStorage(raw json.RawMessage) error {
	if len(raw) == 0 {
		return nil
	}
	holder := struct {
		StorageRaw json.RawMessage `caddy:"namespace=caddy.storage inline_key=module"`
	}{raw}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	val, err := ctx.LoadModule(&holder, "StorageRaw")
	if err != nil {
		return err
	}
	conv, ok := val.(caddy.StorageConverter)
	if !ok {
		return fmt.Errorf("module %T is not a storage converter", val)
	}
	_, err = conv.CertMagicStorage()
	return err
}
