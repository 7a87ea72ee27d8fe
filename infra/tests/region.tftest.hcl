# A region without Rekognition is refused when planning, by name, with the
# regions that offer it, instead of failing every job at DetectLabels.

mock_provider "aws" {
  override_during = plan
  source          = "./tests/mocks"
}

run "a_region_that_offers_rekognition_plans" {
  command = plan

  variables {
    region = "eu-west-1"
  }

  override_data {
    target = data.aws_ssm_parameters_by_path.rekognition_regions
    values = {
      names = [
        "/aws/service/global-infrastructure/services/rekognition/regions/eu-west-1",
        "/aws/service/global-infrastructure/services/rekognition/regions/us-east-1",
      ]
    }
  }

  assert {
    condition     = data.aws_ssm_parameters_by_path.rekognition_regions.path == "/aws/service/global-infrastructure/services/rekognition/regions" && output.region == "eu-west-1"
    error_message = "The plan must read AWS's public list of Rekognition regions and accept one of them."
  }
}

run "a_region_without_rekognition_is_refused_when_planning" {
  command = plan

  variables {
    region = "eu-south-2"
  }

  override_data {
    target = data.aws_ssm_parameters_by_path.rekognition_regions
    values = {
      names = [
        "/aws/service/global-infrastructure/services/rekognition/regions/eu-west-1",
        "/aws/service/global-infrastructure/services/rekognition/regions/us-east-1",
      ]
    }
  }

  expect_failures = [data.aws_ssm_parameters_by_path.rekognition_regions]
}
