package agent

import (
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/nodeagent/nodeagent/pkg/config"
	"github.com/nodeagent/nodeagent/pkg/eviction"
	"github.com/nodeagent/nodeagent/pkg/logs"
)

// evictionSettings are evictionHard and evictionSoft (with its grace periods) as the eviction manager reads them.
type evictionSettings struct {
	hard, soft []eviction.Threshold
}

func completeEviction(cfg *config.Configuration) (evictionSettings, field.ErrorList) {
	var s evictionSettings
	var errs field.ErrorList
	var err error
	if s.hard, err = eviction.ParseThresholds(cfg.EvictionHard); err != nil {
		errs = append(errs, field.Invalid(field.NewPath("evictionHard"), cfg.EvictionHard, err.Error()))
	}
	if s.soft, err = eviction.ParseSoftThresholds(cfg.EvictionSoft, cfg.EvictionSoftGracePeriod); err != nil {
		errs = append(errs, field.Invalid(field.NewPath("evictionSoft"), cfg.EvictionSoft, err.Error()))
	}
	return s, errs
}

// logsSettings are the log shipper's values parsed from the logs section.
type logsSettings struct {
	tag *logs.TagTemplate
}

func completeLogs(cfg *config.Configuration) (logsSettings, field.ErrorList) {
	tag, err := logs.ParseTagTemplate(cfg.Logs.TagTemplate)
	if err != nil {
		return logsSettings{}, field.ErrorList{field.Invalid(field.NewPath("logs", "tagTemplate"), cfg.Logs.TagTemplate, err.Error())}
	}
	return logsSettings{tag: tag}, nil
}
