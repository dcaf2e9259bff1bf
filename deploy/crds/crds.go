// Package crds holds the module that generates the Prometheus Operator CRDs
// for the deployment test: run
//
//	go tool controller-gen crd:crdVersions=v1 \
//	  paths=github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1 \
//	  output:crd:dir=DIR
//
// in this directory (scripts/deploy-test.sh does).
package crds

// The operator's API types, so that the module keeps requiring them.
import _ "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
